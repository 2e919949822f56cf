/* shim.c: memimpl served to the oracle (proofs/oracle/PROTOCOL.md) by the
 * implementers' kit: the hello's lists and one call. The kit parses the requests,
 * writes the replies and turns a fault or a panic inside a call into a failed
 * call (docs/implementers-kit.md). */
#define MEMSPEC_ORACLE_IMPLEMENTATION
#include "memimpl.h"

static const char *const managers[] = {"PageManager", "VirtualMemoryManager", "KernelHeap", 0};
static const char *const observations[] = {"FrameCounts", "FrameBitmap", "PageTables",
                                           "VirtualToPhysical", "ReadBytes", "HeapWalk",
                                           "HoleIndex", 0};

int main(void) {
    return mo_serve(&(struct mo_implementation){
        .name = "memspec C test impl", .managers = managers, .observations = observations,
        .call = mem_call, .observe = mem_observe});
}
