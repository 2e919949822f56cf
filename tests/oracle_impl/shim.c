/* shim.c: memimpl served to the oracle (proofs/oracle/PROTOCOL.md) by the
 * implementers' kit: the hello's lists and one call. The kit parses the requests,
 * writes the replies and turns a fault or a panic inside a call into a failed
 * call (docs/implementers-kit.md). */
#define MEMSPEC_ORACLE_IMPLEMENTATION
#ifdef THREADS
#define MEMSPEC_ORACLE_THREADS /* protocol 3: memimpl.c's THREADS build */
#endif
#include "memimpl.h"

#include <stdlib.h>
#include <string.h>

/* The THREADS build's pool is judged by concurrent runs only (PROTOCOL.md,
 * "Concurrency (protocol 3)"): the sequential oracle leaves it out. */
static const char *const managers[] = {"PageManager", "VirtualMemoryManager", "KernelHeap",
#ifdef THREADS
                                       "MemoryPool",
#endif
                                       0};
static const char *const observations[] = {"FrameCounts", "FrameBitmap", "PageTables",
                                           "VirtualToPhysical", "ReadBytes", "HeapWalk",
                                           "HoleIndex",
#ifdef THREADS
                                           "PoolFreeList",
#endif
                                           0};

/* MEMIMPL_CONFIG=real: the tutorial heap's own constants (an index of 0x20000
 * entries, a min size of 0x70000, a 1 MB initial heap) on 4096 frames,
 * declared in the hello (PROTOCOL.md, "Configuration"). */
static const char real_config[] = "{\"kernel\":{\"mem_end\":16777216,"
    "\"heap_start\":3221225472,\"heap_end\":3222274048,\"heap_max\":3489656832,"
    "\"index_size\":131072,\"min_size\":458752}}";

#ifdef THREADS
/* The threads the THREADS build runs concurrently (the hello's "threads"). */
#define THREADS_MAX 8
#endif

int main(void) {
    const char *config = getenv("MEMIMPL_CONFIG");
    return mo_serve(&(struct mo_implementation){
        .name = "memspec C test impl", .managers = managers, .observations = observations,
        .config = config && !strcmp(config, "real") ? real_config : NULL,
        .call = mem_call, .observe = mem_observe,
#ifdef THREADS
        .threads = THREADS_MAX,
#endif
    });
}
