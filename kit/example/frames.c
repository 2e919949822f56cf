/* frames.c: the implementers' kit's worked example (docs/implementers-kit.md).
 *
 * A kernel's physical frame allocator, as a hobby kernel writes it, judged by the
 * oracle as PROTOCOL.md's PageManager: a frame table (one owner byte a frame)
 * placed at its own virtual address, FRAME_TABLE_VA, right below an unmapped
 * guard page, lowest free frame first. Everything about the protocol is the
 * kit's; this file has only the allocator and one function that calls into it.
 *
 *   cc -std=c11 -O2 -o frames kit/example/frames.c
 *   python -m proofs.oracle --impl ./frames
 *
 * Build switches, each a kernel's bug the oracle reports beside its step:
 *   WILD_FREE       FreeFrame forgets its range check: a frame past the end reads
 *                   the guard page (SIGSEGV, a failed call with the fault's address)
 *   PANIC_WHEN_FULL RequestFrame panics when no frame is free instead of failing */
#define MEMSPEC_ORACLE_IMPLEMENTATION
#include "../memspec_oracle.h"

#include <assert.h>
#include <string.h>

#define PAGE 4096u
#define NO_FRAME 0xFFFFFFFFu
#define IDENTITY_LIMIT 0x400000u            /* the reserved low memory ends below 4 MB */
#define FRAME_TABLE_VA 0x20000000u          /* where the kernel keeps its frame table */
enum { FREE, RESERVED, HELD };              /* a frame's owner */
enum { OK = 0, E_BLOCK = 9, E_NOMEM = 8, E_NOT_READY = 21, E_PARAM = 87, E_BUSY = 170,
       E_ADDRESS = 487, E_ALREADY = 1247 }; /* the Windows error numbers PROTOCOL.md uses */

static uint8_t *owner;                      /* owner[f]: inside the mapping, ending at its end */
static uint32_t nframes, used;

/* ---- the allocator (what a kernel has) ---------------------------------------------- */

static int init(int64_t start, int64_t end) {
    if (owner) return E_ALREADY;
    if (start < 0 || start > IDENTITY_LIMIT || end <= 0 || end > (1LL << 32)
        || (start + PAGE - 1) / PAGE * PAGE >= end / PAGE * PAGE)
        return E_PARAM;
    nframes = (uint32_t)(end / PAGE);
    size_t pages = (nframes + PAGE - 1) / PAGE;
    uint8_t *table = mo_map_at(FRAME_TABLE_VA, pages * PAGE, 1);
    if (!table) mo_panic("cannot map the frame table at %#x", FRAME_TABLE_VA);
    owner = table + pages * PAGE - nframes; /* its last byte is the mapping's last */
    for (uint32_t f = 0; f < (uint32_t)((start + PAGE - 1) / PAGE); f++) owner[f] = RESERVED, used++;
    return OK;
}

static int64_t lowest_free(void) {
    for (uint32_t f = 0; f < nframes; f++)
        if (owner[f] == FREE) return f;
    return -1;
}

static int64_t request(void) {
    int64_t f = lowest_free();
#ifdef PANIC_WHEN_FULL
    if (f < 0) mo_panic("out of physical memory (%u frames used)", used);
#endif
    if (f < 0) return -1;
    owner[f] = HELD, used++;
    assert(used <= nframes);
    return f;
}

static int release(uint32_t f) {
#ifndef WILD_FREE
    if (f >= nframes) return E_ADDRESS;
#endif
    if (owner[f] != HELD) return owner[f] == FREE ? E_BLOCK : E_BUSY;
    owner[f] = FREE, used--;
    return OK;
}

/* ---- the calls into it (what the implementer writes) --------------------------------- */

static int is_u32(const struct mo_arg *a) { return a && a->kind == MO_INT && a->num >= 0 && a->num < (1LL << 32); }
static int is_bool(const struct mo_arg *a) { return a && a->kind == MO_BOOL; }

static struct mo_result call(const char *manager, const char *op, const struct mo_args *args) {
    const struct mo_arg *a = mo_arg_named(args, "frame_addr");
    if (strcmp(manager, "PageManager")) return mo_unsupported();
    if (!strcmp(op, "InitializePhysicalMemory")) {
        const struct mo_arg *s = mo_arg_named(args, "mem_start"), *e = mo_arg_named(args, "mem_end");
        if (owner) return mo_bool(0, E_ALREADY);
        if (!is_u32(s) || !e || e->kind != MO_INT) return mo_bool(0, E_PARAM);
        int code = init(s->num, e->num);
        return mo_bool(code == OK, (uint32_t)code);
    }
    if (!strcmp(op, "RequestFrame")) {
        if (!is_bool(mo_arg_named(args, "is_kernel")) || !is_bool(mo_arg_named(args, "is_writeable")))
            return mo_int(NO_FRAME, E_PARAM);
        if (!owner) return mo_int(NO_FRAME, E_NOT_READY);
        int64_t f = request();
        return f < 0 ? mo_int(NO_FRAME, E_NOMEM) : mo_int(f * PAGE, OK);
    }
    if (!strcmp(op, "FreeFrame")) {
        if (!is_u32(a) || a->num % PAGE) return mo_bool(0, E_PARAM);
        if (!owner) return mo_bool(0, E_NOT_READY);
        int code = release((uint32_t)(a->num / PAGE));
        return mo_bool(code == OK, (uint32_t)code);
    }
    if (!strcmp(op, "FirstFreeFrame")) {
        int64_t f = owner ? lowest_free() : -1;
        return mo_int(f < 0 ? NO_FRAME : f * PAGE, !owner ? E_NOT_READY : f < 0 ? E_NOMEM : OK);
    }
    if (!strcmp(op, "GetFrameCount")) return mo_int(nframes, OK);
    if (!strcmp(op, "GetFreeFrameCount")) return mo_int(nframes - used, OK);
    if (!strcmp(op, "GetUsedFrameCount")) return mo_int(used, OK);
    return mo_unsupported();
}

static int observe(const char *name, const struct mo_args *args, struct mo_buf *out) {
    (void)args;
    if (!strcmp(name, "FrameCounts")) {
        mo_buf_printf(out, "{\"frames\":%u,\"free\":%u,\"used\":%u}", nframes, nframes - used, used);
        return 1;
    }
    if (strcmp(name, "FrameBitmap")) return 0;
    const char *sep = "";
    mo_buf_put(out, "{\"used\":[", 9);
    for (uint32_t f = 0; f < nframes;) { /* runs of used frames */
        uint32_t first = f;
        while (f < nframes && owner[f] != FREE) f++;
        if (f > first) mo_buf_u32s(out, sep, (uint32_t[]){first, f - first}, 2), sep = ",";
        while (f < nframes && owner[f] == FREE) f++;
    }
    mo_buf_put(out, "]}", 2);
    return 1;
}

int main(void) {
    static const char *const managers[] = {"PageManager", 0};
    static const char *const observations[] = {"FrameCounts", "FrameBitmap", 0};
    return mo_serve(&(struct mo_implementation){
        .name = "frames.c (the kit's example)", .managers = managers,
        .observations = observations, .call = call, .observe = observe});
}
