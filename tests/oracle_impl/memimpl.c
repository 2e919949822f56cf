/* memimpl.c: PageManager, kernel directory, KernelHeap and MemoryPool, as the model
 * has them (the pool: its calls for concurrent runs, PROTOCOL.md "Concurrency").
 *
 * The intended algorithm, written for the oracle's test: lowest free frame
 * first, page tables allocated on demand before the page they map, blocks with
 * in-memory headers and footers, a size-ordered hole index (a new hole goes
 * before the holes of its size), expansion and contraction by whole pages.
 * The checks run in the model's order with its error codes (model/errors.py).
 *
 * Build switches, each changing one thing (the oracle must notice each):
 * BUG_FRAME_TWICE, BUG_INDEX_UNSORTED, BUG_SPLIT_UNDERFLOW, BUG_ALIGN,
 * BUG_CONTRACT_LIVE, BUG_STALE_FOOTER, and HIGHEST_FRAME (not a bug: frames
 * are taken from the top of memory). The boundary classes where heaps break
 * (issue 16, "Campaigns"): BUG_INDEX_FULL (a Free needing a new index entry is
 * let through a full index: an off-by-one), BUG_ALIGN_GAP (the split made for a
 * page-aligned payload leaves a gap of 1..19 bytes as a hole), BUG_PAST_MAX (an
 * Alloc grows the heap past its max), BUG_WRAP (size + header + footer computed
 * in 32 bits: a size near 2^32 wraps to a tiny block), BUG_EXACT_FIT (a hole of
 * exactly the size asked is passed over), BUG_BOTH_NEIGHBOURS (a Free between
 * two holes merges the left one only).
 *
 * THREADS: the threaded build (protocol 3, docs/concurrency.md): the seed's
 * spinlocks, PageManager's (memory-design.md line 42) and KernelHeap's (line
 * 116), are real spinlocks on C11 atomics, taken by every call of their manager;
 * the heap takes the PageManager's lock inside its own when it maps or unmaps a
 * page. Its bug switches each drop a lock on one path, and widen the race
 * window that opens between the check and the act by sleeping 200 us there
 * (race_window: an interrupt or a preemption there does the same on a real
 * kernel, only more rarely; a sched_yield() alone widens nothing on an idle
 * 2-core machine, where the yielding thread has its CPU to itself):
 * BUG_RACE_REQUEST RequestFrame finds the lowest free frame and marks it
 * without the lock; BUG_RACE_FREE FreeFrame checks the frame is held and
 * releases it without the lock; BUG_RACE_ALLOC Alloc and Free run without the
 * heap's lock (the window: after Alloc chose its hole, after Free checked its
 * block); BUG_RACE_POOL AllocBlock and FreeBlock run without the pool's lock
 * (memory-design.md line 146).
 *
 * A heap call that maps pages reserves every frame it needs before it maps one
 * (reserve_frames: the model's Expand checks the frames it needs, then takes
 * them), under the PageManager's lock: a RequestFrame cannot take them between
 * the check and the mapping.
 *
 * LOCKFREE_FRAMES (with THREADS; docs/concurrency.md, "A lock-free frame
 * allocator"): RequestFrame and FreeFrame take no lock. The bitmap is one 64-bit
 * atomic word per 16 frames (used bits, held-by-a-caller bits and a version),
 * each change one compare-and-swap of one word; GetFreeFrameCount and a
 * RequestFrame that finds nothing read a snapshot (two collects alike), and
 * every failure or count waits out a heap call in progress (heap_seq, a seqlock
 * the heap's calls write). The heap's frames come from the same words.
 * WIDE_CAS sleeps as race_window does between each load and its
 * compare-and-swap, so that the swaps race; BUG_LOCKFREE_STORE (a bug) claims a
 * frame with a store instead of a compare-and-swap. */
#ifdef THREADS
#define _POSIX_C_SOURCE 200809L /* nanosleep (race_window), before any header */
#endif
#include "memimpl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef THREADS
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

/* A spinlock as a kernel has one: test-and-set, spinning on a read; it yields
 * the CPU after a while, as a user-space thread must (its holder may be
 * descheduled, which a kernel spinlock prevents by disabling preemption). */
typedef struct { atomic_flag held; } spinlock;
#define SPINLOCK_INIT {ATOMIC_FLAG_INIT}
static void spin_lock(spinlock *l) {
    for (unsigned spins = 0; atomic_flag_test_and_set_explicit(&l->held, memory_order_acquire);)
        if (++spins % 64 == 0) sched_yield();
}
static void spin_unlock(spinlock *l) { atomic_flag_clear_explicit(&l->held, memory_order_release); }
/* The race window of a bug build (module comment). */
static inline void race_window(void) {
    nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 200000}, NULL);
}
#else
typedef struct { int unused; } spinlock;
#define SPINLOCK_INIT {0}
static void spin_lock(spinlock *l) { (void)l; }
static void spin_unlock(spinlock *l) { (void)l; }
#endif

static spinlock pm_lock = SPINLOCK_INIT, heap_lock = SPINLOCK_INIT, pool_lock = SPINLOCK_INIT;

#define PAGE 4096
#define NO_FRAME 0xFFFFFFFFu
#define LIMIT (1LL << 32)
#define IDENTITY_LIMIT 0x400000
#define KERNEL_SPACE 0xC0000000LL
#define HEAP_TOP 0xFFFFF000LL
#define MAGIC 0x123890ABu
#define HDR 12
#define FTR 8
#define MIN_BLOCK 20
#define PTE_P 1u
#define PTE_W 2u
#define PTE_U 4u
#define AD_BITS 0x60u

enum { OK = 0, E_DENIED = 5, E_TRASHED = 7, E_NOMEM = 8, E_BLOCK = 9, E_NOT_READY = 21,
       E_PARAM = 87, E_BUSY = 170, E_EXISTS = 183, E_ADDRESS = 487, E_NOACCESS = 998,
       E_ALREADY = 1247 };
enum { FREE, RESERVED, DIRECTORY, TABLE, MAPPED, HELD }; /* frame owners */

static int64_t align_up(int64_t v) { return (v + PAGE - 1) / PAGE * PAGE; } /* v >= 0 */
static int is_u32(const struct arg *a) { return a->kind == ARG_INT && a->num >= 0 && a->num < LIMIT; }
static int is_int(const struct arg *a) { return a->kind == ARG_INT; }
static int is_bool(const struct arg *a) { return a->kind == ARG_BOOL; }
static struct result res_bool(int v, uint32_t e) { return (struct result){RES_BOOL, v, e}; }
static struct result res_int(int64_t v, uint32_t e) { return (struct result){RES_INT, v, e}; }

/* ---- PageManager: frame bitmap, owners, contents ------------------------- */

static struct {
    int initialized;
    uint32_t nframes, nwords, used, reserved_end, hint; /* words below hint are full */
    uint32_t *bits;
    uint8_t *owner;
    uint8_t **mem; /* a frame's 4096 bytes; NULL reads as zeros */
} pm;

#ifdef LOCKFREE_FRAMES
#if !defined THREADS || defined HIGHEST_FRAME || defined BUG_FRAME_TWICE \
    || defined BUG_RACE_REQUEST || defined BUG_RACE_FREE
#error "LOCKFREE_FRAMES is a THREADS build of its own (frames from the lowest, no frame bug)"
#endif
/* LOCKFREE_FRAMES (module comment): the bitmap is lf, one 64-bit atomic word per 16
 * frames: bits 0-15 a frame used, bits 16-31 held by a caller (RequestFrame's, the
 * only frames FreeFrame frees), bits 32-63 a version counting the word's changes
 * (two collects alike are then a snapshot: no ABA). Every change is one
 * compare-and-swap of one word. The owner array records the managers' frames
 * only (a caller's frame is its held bit); lf_used counts the used frames (exact
 * at a quiescent point). heap_seq is odd while a KernelHeap call runs: it may
 * reserve frames and give them back, or free its pages one at a time, so a
 * failure or a count of frames, which must see one state of the model, waits for
 * it to be even and unchanged (a seqlock whose only writer holds heap_lock). */
#define LF_FRAMES 16
#define LF_VERSION (1ull << 32)
static _Atomic uint64_t *lf;
static uint32_t lf_nwords;
static atomic_uint lf_used, heap_seq;

static uint64_t lf_valid(uint32_t w) {
    uint32_t tail = pm.nframes - w * LF_FRAMES;
    return tail >= LF_FRAMES ? 0xFFFFu : (1u << tail) - 1;
}

static int frame_used(uint32_t f) { return (int)(atomic_load(&lf[f / LF_FRAMES]) >> (f % LF_FRAMES) & 1); }

/* Set frame f's used bit (init: the reserved frames), nothing else running. */
static void mark(uint32_t f, int owner) {
    atomic_fetch_add(&lf[f / LF_FRAMES], (1ull << (f % LF_FRAMES)) + LF_VERSION);
    atomic_fetch_add(&lf_used, 1);
    pm.owner[f] = (uint8_t)owner;
}

/* Claim the lowest frame whose used bit is clear, as a caller's (held) or a
 * manager's; -1 when the scan finds none (not yet a proof that none is free: a
 * frame may be freed behind the scan). WIDE_CAS sleeps between the load and the
 * compare-and-swap: another thread's change in between makes it fail and retry. */
static int64_t lf_claim(int held) {
    for (uint32_t w = 0; w < lf_nwords; w++) {
        uint64_t old = atomic_load(&lf[w]);
        for (uint64_t free; (free = ~old & lf_valid(w));) {
            uint32_t b = (uint32_t)__builtin_ctzll(free);
            uint64_t new = (old | 1ull << b | (held ? 1ull << (b + 16) : 0)) + LF_VERSION;
#ifdef WIDE_CAS
            race_window();
#endif
#ifdef BUG_LOCKFREE_STORE
            atomic_store(&lf[w], new); /* a store, not a compare-and-swap: a change lost */
            if (1) {
#else
            if (atomic_compare_exchange_weak(&lf[w], &old, new)) {
#endif
                atomic_fetch_add(&lf_used, 1);
                return (int64_t)w * LF_FRAMES + b;
            }
        }
    }
    return -1;
}

/* Clear frame f's used (and held) bit: a manager's frame going back. */
static void lf_unclaim(uint32_t f) {
    uint64_t bits = (1ull << (f % LF_FRAMES)) * 0x10001u, old = atomic_load(&lf[f / LF_FRAMES]);
    while (!atomic_compare_exchange_weak(&lf[f / LF_FRAMES], &old, (old & ~bits) + LF_VERSION)) {}
    atomic_fetch_sub(&lf_used, 1);
}

/* The free frames at one instant: two collects of every word alike, versions
 * included; gated, also with heap_seq even and unchanged around them (no heap
 * call's frames half taken or half given back). The heap's own calls ask it
 * ungated (their frames are theirs). */
static uint32_t lf_free_snapshot(int gated) {
    uint64_t *seen = malloc(lf_nwords * sizeof *seen);
    if (!seen) abort();
    for (;;) {
        unsigned seq = atomic_load(&heap_seq);
        if (gated && seq & 1) {
            sched_yield();
            continue;
        }
        uint32_t n = 0, same = 1;
        for (uint32_t w = 0; w < lf_nwords; w++) {
            seen[w] = atomic_load(&lf[w]);
            n += (uint32_t)__builtin_popcountll(~seen[w] & lf_valid(w));
        }
        for (uint32_t w = 0; w < lf_nwords && same; w++) same = atomic_load(&lf[w]) == seen[w];
        if (same && (!gated || atomic_load(&heap_seq) == seq)) {
            free(seen);
            return n;
        }
    }
}

static int64_t lowest_free(void) { /* FirstFreeFrame: a sequential call */
    for (uint32_t f = 0; f < pm.nframes; f++)
        if (!frame_used(f)) return f;
    return -1;
}

static int64_t take_frame(int owner) {
    int64_t f = lf_claim(0);
    if (f >= 0) pm.owner[f] = (uint8_t)owner;
    return f;
}

static void release_frame(uint32_t f) { /* owner and contents first: then it is free */
    pm.owner[f] = FREE;
    free(pm.mem[f]);
    pm.mem[f] = NULL;
    lf_unclaim(f);
}

static void release_frame_locked(uint32_t f) { release_frame(f); } /* no lock to hold */

static uint32_t free_count(void) { return pm.nframes - atomic_load(&lf_used); }
static uint32_t used_count(void) { return atomic_load(&lf_used); }

#else
static uint32_t valid_bits(uint32_t w) {
    uint32_t tail = pm.nframes - w * 32;
    return tail >= 32 ? 0xFFFFFFFFu : (1u << tail) - 1;
}

static int64_t lowest_free(void) {
    for (uint32_t w = pm.hint; w < pm.nwords; w++) {
        uint32_t free = ~pm.bits[w] & valid_bits(w);
        if (free) {
            pm.hint = w;
            return (int64_t)w * 32 + __builtin_ctz(free);
        }
    }
    pm.hint = pm.nwords;
    return -1;
}

static int64_t highest_free(void) {
    for (uint32_t w = pm.nwords; w-- > pm.hint;) {
        uint32_t free = ~pm.bits[w] & valid_bits(w);
        if (free) return (int64_t)w * 32 + 31 - __builtin_clz(free);
    }
    return -1;
}

static void mark(uint32_t f, int owner) {
    pm.bits[f / 32] |= 1u << (f % 32);
    pm.used++;
    pm.owner[f] = (uint8_t)owner;
}

/* Allocate a free frame to owner (the lowest; HIGHEST_FRAME: the highest); -1 if none.
 * The caller holds pm_lock. */
static int64_t take_frame_locked(int owner) {
#ifdef HIGHEST_FRAME
    int64_t f = highest_free();
#else
    int64_t f = lowest_free();
    (void)highest_free;
#endif
    if (f >= 0) mark((uint32_t)f, owner);
    return f;
}

static void release_frame_locked(uint32_t f) { /* the caller holds pm_lock */
    pm.bits[f / 32] &= ~(1u << (f % 32));
    pm.used--;
    pm.owner[f] = FREE;
    free(pm.mem[f]);
    pm.mem[f] = NULL;
    if (f / 32 < pm.hint) pm.hint = f / 32;
}

/* The same, taking the PageManager's lock (the directory's frames). */
static int64_t take_frame(int owner) {
    spin_lock(&pm_lock);
    int64_t f = take_frame_locked(owner);
    spin_unlock(&pm_lock);
    return f;
}

static uint32_t free_count(void) { return pm.nframes - pm.used; }
static uint32_t used_count(void) { return pm.used; }
static int frame_used(uint32_t f) { return (int)(pm.bits[f / 32] >> (f % 32) & 1); }
#endif

/* The frames a KernelHeap call needs for the pages and tables it maps, taken
 * before it maps any (reserve_frames: all of them or none, as the model's Expand
 * checks them first), then handed out in the order taken by take_reserved; what
 * a call leaves (it failed after reserving) goes back when it ends
 * (unreserve). Under the PageManager's lock, a RequestFrame cannot take them
 * between the check and the mapping; LOCKFREE_FRAMES claims them one by one and
 * gives them back if it falls short. The heap's lock serializes its calls;
 * the reservation is the calling thread's own all the same (BUG_RACE_ALLOC's
 * calls run without that lock). */
#ifdef THREADS
static _Thread_local struct {
#else
static struct {
#endif
    uint32_t *frames;
    size_t n, next, cap;
} reserved;

static int reserve_frames(int64_t n) {
    if (n > (int64_t)pm.nframes) return 0;
    if ((size_t)n > reserved.cap) {
        reserved.cap = (size_t)n;
        reserved.frames = realloc(reserved.frames, reserved.cap * sizeof *reserved.frames);
        if (!reserved.frames) abort();
    }
    reserved.n = reserved.next = 0;
#ifdef LOCKFREE_FRAMES
    while ((int64_t)reserved.n < n) {
        int64_t f = lf_claim(0);
        if (f >= 0) {
            pm.owner[f] = MAPPED;
            reserved.frames[reserved.n++] = (uint32_t)f;
        } else if (lf_free_snapshot(0) == 0) { /* none free at one instant: fall short */
            while (reserved.n) release_frame(reserved.frames[--reserved.n]);
            return 0;
        }
    }
#else
    spin_lock(&pm_lock);
    if (n <= (int64_t)free_count())
        while ((int64_t)reserved.n < n) reserved.frames[reserved.n++] = (uint32_t)take_frame_locked(MAPPED);
    spin_unlock(&pm_lock);
    if ((int64_t)reserved.n < n) return 0;
#endif
    return 1;
}

/* A frame for owner: the next reserved one, else one taken now. */
static int64_t take_reserved(int owner) {
    if (reserved.next == reserved.n) return take_frame(owner);
    uint32_t f = reserved.frames[reserved.next++];
    pm.owner[f] = (uint8_t)owner;
    return f;
}

/* Give back what is left, at once under the PageManager's lock (a count taken in
 * between would see part of a failed call's frames). */
static void unreserve(void) {
    spin_lock(&pm_lock);
    while (reserved.n > reserved.next) release_frame_locked(reserved.frames[--reserved.n]);
    spin_unlock(&pm_lock);
    reserved.n = reserved.next = 0;
}



static struct result pm_init(const struct arg *const *p) {
    int64_t start = p[0]->num, end = p[1]->num;
    if (pm.initialized) return res_bool(0, E_ALREADY);
    if (!(is_u32(p[0]) && is_int(p[1]) && end > 0 && end <= LIMIT && start <= IDENTITY_LIMIT
          && align_up(start) < end / PAGE * PAGE))
        return res_bool(0, E_PARAM);
    pm.nframes = (uint32_t)(end / PAGE);
    pm.nwords = (pm.nframes + 31) / 32;
    pm.bits = calloc(pm.nwords, 4);
    pm.owner = calloc(pm.nframes, 1);
    pm.mem = calloc(pm.nframes, sizeof *pm.mem);
    if (!pm.bits || !pm.owner || !pm.mem) abort();
#ifdef LOCKFREE_FRAMES
    lf_nwords = (pm.nframes + LF_FRAMES - 1) / LF_FRAMES;
    lf = malloc(lf_nwords * sizeof *lf);
    if (!lf) abort();
    for (uint32_t w = 0; w < lf_nwords; w++) atomic_init(&lf[w], 0);
#endif
    pm.reserved_end = (uint32_t)(align_up(start) / PAGE);
    for (uint32_t f = 0; f < pm.reserved_end; f++) mark(f, RESERVED);
    pm.initialized = 1;
    return res_bool(1, OK);
}

static struct result pm_request(const struct arg *const *p) {
    if (!is_bool(p[0]) || !is_bool(p[1])) return res_int(NO_FRAME, E_PARAM);
    if (!pm.initialized) return res_int(NO_FRAME, E_NOT_READY);
#if defined BUG_FRAME_TWICE
    int64_t f = lowest_free(); /* forgets to mark it used */
#elif defined BUG_RACE_REQUEST && defined THREADS
    int64_t f = lowest_free(); /* without the lock: another thread may find it too */
    race_window();
    if (f >= 0) mark((uint32_t)f, HELD);
#elif defined LOCKFREE_FRAMES
    int64_t f;
    /* a failure when a snapshot, one instant, shows no frame free */
    while ((f = lf_claim(1)) < 0 && lf_free_snapshot(1) > 0) {}
#else
    int64_t f = take_frame(HELD);
#endif
    return f < 0 ? res_int(NO_FRAME, E_NOMEM) : res_int(f * PAGE, OK);
}

static struct result pm_free(const struct arg *const *p) {
    if (!is_u32(p[0]) || p[0]->num % PAGE) return res_bool(0, E_PARAM);
    if (!pm.initialized) return res_bool(0, E_NOT_READY);
    int64_t f = p[0]->num / PAGE;
    if (f >= pm.nframes) return res_bool(0, E_ADDRESS);
#if defined BUG_RACE_FREE && defined THREADS
    if (pm.owner[f] != HELD) return res_bool(0, pm.owner[f] == FREE ? E_BLOCK : E_BUSY);
    race_window(); /* held when checked: another FreeFrame may check it too */
    release_frame_locked((uint32_t)f);
    return res_bool(1, OK);
#elif defined LOCKFREE_FRAMES
    _Atomic uint64_t *word = &lf[f / LF_FRAMES];
    uint64_t used = 1ull << (f % LF_FRAMES), held = used << 16;
    for (;;) {
        uint64_t old = atomic_load(word);
        while (old & held) { /* a caller's: clear used and held at once */
#ifdef WIDE_CAS
            race_window();
#endif
            if (atomic_compare_exchange_weak(word, &old, (old & ~(used | held)) + LF_VERSION)) {
                atomic_fetch_sub(&lf_used, 1);
                return res_bool(1, OK);
            }
        }
        /* free or a manager's: read at an instant no heap call is under way */
        unsigned seq = atomic_load(&heap_seq);
        if (seq & 1) {
            sched_yield();
            continue;
        }
        old = atomic_load(word);
        if (!(old & held) && atomic_load(&heap_seq) == seq)
            return res_bool(0, old & used ? E_BUSY : E_BLOCK);
    }
#else
    spin_lock(&pm_lock);
    int owner = pm.owner[f];
    if (owner == HELD) release_frame_locked((uint32_t)f);
    spin_unlock(&pm_lock);
    if (owner != HELD) return res_bool(0, owner == FREE ? E_BLOCK : E_BUSY);
    return res_bool(1, OK);
#endif
}

static struct result pm_first(const struct arg *const *p) {
    (void)p;
    if (!pm.initialized) return res_int(NO_FRAME, E_NOT_READY);
    spin_lock(&pm_lock);
    int64_t f = lowest_free();
    spin_unlock(&pm_lock);
    return f < 0 ? res_int(NO_FRAME, E_NOMEM) : res_int(f * PAGE, OK);
}

static struct result pm_count(const struct arg *const *p) { (void)p; return res_int(pm.nframes, OK); }
static struct result pm_free_count(const struct arg *const *p) {
    (void)p;
#ifdef LOCKFREE_FRAMES
    uint32_t n = lf_free_snapshot(1);
#else
    spin_lock(&pm_lock);
    uint32_t n = free_count();
    spin_unlock(&pm_lock);
#endif
    return res_int(n, OK);
}
static struct result pm_used_count(const struct arg *const *p) { (void)p; return res_int(used_count(), OK); }

/* ---- the kernel directory ------------------------------------------------ */

static struct {
    int ready;
    uint32_t dir_frame;
    uint32_t pde[1024];
    uint32_t *table[1024]; /* 1024 PTEs per present table */
} vm;

static int is_kernel_address(int64_t va) { return va < IDENTITY_LIMIT || va >= KERNEL_SPACE; }

static uint32_t pte_of(int64_t va) {
    if (va < 0 || va >= LIMIT || !vm.table[va >> 22]) return 0;
    return vm.table[va >> 22][(va >> 12) & 1023];
}

/* The table of slot, allocated (and linked: a kernel table) when missing. */
static uint32_t *table_for(uint32_t slot) {
    if (!vm.table[slot]) {
        uint32_t f = (uint32_t)take_reserved(TABLE);
        vm.table[slot] = calloc(1024, 4);
        if (!vm.table[slot]) abort();
        vm.pde[slot] = f << 12 | PTE_P | PTE_W | (is_kernel_address((int64_t)slot << 22) ? 0 : PTE_U);
    }
    return vm.table[slot];
}

/* AllocPage in the kernel directory (the caller checked it succeeds). */
static void alloc_page(uint32_t va, int is_kernel, int writeable) {
    uint32_t *table = table_for(va >> 22);
    uint32_t f = (uint32_t)take_reserved(MAPPED);
    table[(va >> 12) & 1023] = f << 12 | PTE_P | (writeable ? PTE_W : 0) | (is_kernel ? 0 : PTE_U);
}

static void unmap_page(uint32_t va) { /* the caller holds pm_lock */
    uint32_t *entry = &vm.table[va >> 22][(va >> 12) & 1023];
    uint32_t f = *entry >> 12;
    if (!(*entry & PTE_P) || pm.owner[f] != MAPPED) return;
    *entry = 0;
    release_frame_locked(f);
}

/* Read n bytes at a kernel virtual address without touching the PTEs; 0 if unmapped. */
static int vread(int64_t va, uint8_t *dst, size_t n) {
    while (n) {
        uint32_t e = pte_of(va);
        if (!(e & PTE_P)) return 0;
        size_t off = (size_t)(va & (PAGE - 1)), piece = PAGE - off < n ? PAGE - off : n;
        const uint8_t *page = pm.mem[e >> 12];
        if (page) memcpy(dst, page + off, piece);
        else memset(dst, 0, piece);
        va += (int64_t)piece, dst += piece, n -= piece;
    }
    return 1;
}

/* Write n bytes at a kernel virtual address (unmapped pages are skipped). */
static void vwrite(int64_t va, const uint8_t *src, size_t n) {
    while (n) {
        uint32_t e = pte_of(va);
        size_t off = (size_t)(va & (PAGE - 1)), piece = PAGE - off < n ? PAGE - off : n;
        if (e & PTE_P) {
            uint8_t **page = &pm.mem[e >> 12];
            if (!*page && !(*page = calloc(1, PAGE))) abort();
            memcpy(*page + off, src, piece);
        }
        va += (int64_t)piece, src += piece, n -= piece;
    }
}

static struct result vm_init(const struct arg *const *p) {
    (void)p;
    if (vm.ready) return res_bool(0, E_ALREADY);
    if (!pm.initialized) return res_bool(0, E_NOT_READY);
    if (free_count() < 2) return res_bool(0, E_NOMEM);
    vm.dir_frame = (uint32_t)take_frame(DIRECTORY);
    uint32_t *identity = table_for(0);
    for (uint32_t f = 0; f < pm.reserved_end; f++)
        if (pm.owner[f] == RESERVED) identity[f] = f << 12 | PTE_P | PTE_W;
    vm.ready = 1;
    return res_bool(1, OK);
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* WriteVirtualMemory in the kernel directory, supervisor access (CR0.WP=1). */
static struct result vm_write(const struct arg *const *p) {
    const char *hex = p[1]->kind == ARG_STR ? p[1]->str : NULL;
    size_t n = hex ? strlen(hex) : 1;
    for (size_t i = 0; hex && i < n; i++)
        if (hex_digit(hex[i]) < 0) hex = NULL;
    if (!vm.ready) return res_bool(0, E_NOT_READY);
    if (!hex || n % 2) return res_bool(0, E_PARAM);
    n /= 2;
    int64_t va = p[0]->num;
    if (!is_u32(p[0]) || va + (int64_t)n > LIMIT) return res_bool(0, E_PARAM);
    for (int64_t at = va; at < va + (int64_t)n; at = (at & ~(int64_t)(PAGE - 1)) + PAGE) {
        uint32_t pde = vm.pde[at >> 22], pte = pte_of(at);
        if ((pde & pte & (PTE_P | PTE_W)) != (PTE_P | PTE_W)) return res_bool(0, E_NOACCESS);
    }
    uint8_t *data = malloc(n + 1);
    if (!data) abort();
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
    vwrite(va, data, n);
    free(data);
    return res_bool(1, OK);
}

/* ---- KernelHeap ------------------------------------------------------------ */

typedef struct result (*op_fn)(const struct arg *const *p);

struct block {
    uint32_t header, size, requested; /* requested: the size Alloc was asked for */
    int hole;
};
struct hole {
    uint32_t size, header;
};

static struct {
    int created, supervisor, readonly;
    int64_t start, end, max, data_start, index_size, min_size;
    struct block *blocks; /* by address: they tile [data_start, end) */
    size_t nblocks, cap;
    struct hole *index; /* by size; a new hole goes before the holes of its size */
    size_t nholes, hcap;
} heap;

static size_t blk_pos(int64_t header) { /* the first block at or above header */
    size_t lo = 0, hi = heap.nblocks;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (heap.blocks[mid].header < header) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static struct block *blk_at(int64_t header) {
    size_t i = blk_pos(header);
    return i < heap.nblocks && heap.blocks[i].header == header ? &heap.blocks[i] : NULL;
}

static struct block *blk_ending(int64_t end) { /* the block ending at end (the model's _ends) */
    size_t i = blk_pos(end);
    return i > 0 && heap.blocks[i - 1].header + (int64_t)heap.blocks[i - 1].size == end
         ? &heap.blocks[i - 1] : NULL;
}

static struct block *tail(void) { return blk_ending(heap.end); }

static void blk_add(struct block b) {
    if (heap.nblocks == heap.cap) {
        heap.cap = heap.cap * 2 + 64;
        heap.blocks = realloc(heap.blocks, heap.cap * sizeof *heap.blocks);
        if (!heap.blocks) abort();
    }
    size_t i = blk_pos(b.header);
    memmove(&heap.blocks[i + 1], &heap.blocks[i], (heap.nblocks - i) * sizeof b);
    heap.blocks[i] = b;
    heap.nblocks++;
}

static void blk_del(int64_t header) {
    struct block *b = blk_at(header);
    size_t i = (size_t)(b - heap.blocks);
    memmove(b, b + 1, (heap.nblocks - i - 1) * sizeof *b);
    heap.nblocks--;
}

static void index_insert(uint32_t header, uint32_t size, int sorted) {
    if (heap.nholes == heap.hcap) {
        heap.hcap = heap.hcap * 2 + 16;
        heap.index = realloc(heap.index, heap.hcap * sizeof *heap.index);
        if (!heap.index) abort();
    }
    size_t i = 0;
    while (sorted && i < heap.nholes && heap.index[i].size < size) i++;
    if (!sorted) i = heap.nholes;
    memmove(&heap.index[i + 1], &heap.index[i], (heap.nholes - i) * sizeof *heap.index);
    heap.index[i] = (struct hole){size, header};
    heap.nholes++;
}

/* Remove the hole at header from the index and the blocks; its size. */
static uint32_t hole_remove(int64_t header) {
    size_t i = 0;
    while (heap.index[i].header != header) i++;
    uint32_t size = heap.index[i].size;
    memmove(&heap.index[i], &heap.index[i + 1], (heap.nholes - i - 1) * sizeof *heap.index);
    heap.nholes--;
    blk_del(header);
    return size;
}

/* A header's 12 bytes {u32 magic, u8 is_hole, 3 zero bytes, u32 size} (x86: little endian). */
static void header_bytes(uint8_t raw[HDR], uint32_t size, int hole) {
    uint32_t magic = MAGIC;
    memset(raw, 0, HDR);
    memcpy(raw, &magic, 4), raw[4] = (uint8_t)hole, memcpy(raw + 8, &size, 4);
}

static void put_header(int64_t header, uint32_t size, int hole) {
    uint8_t raw[HDR];
    header_bytes(raw, size, hole);
    vwrite(header, raw, HDR);
}

static void put_footer(int64_t header, uint32_t size) { /* {u32 magic, u32 header} */
    uint32_t raw[2] = {MAGIC, (uint32_t)header};
    vwrite(header + size - FTR, (const uint8_t *)raw, FTR);
}

static int header_is(int64_t header, uint32_t size, int hole) {
    uint8_t raw[HDR], want[HDR];
    header_bytes(want, size, hole);
    return vread(header, raw, HDR) && !memcmp(raw, want, HDR);
}

static int footer_is(int64_t at, int64_t header) {
    uint32_t raw[2];
    return vread(at, (uint8_t *)raw, FTR) && raw[0] == MAGIC && raw[1] == (uint32_t)header;
}

/* Whether a block's header and footer in memory are what the heap recorded. */
static int intact(int64_t header, uint32_t size, int hole) {
    return header_is(header, size, hole) && footer_is(header + size - FTR, header);
}

/* A hole: header and footer written, indexed. */
static void hole_at(int64_t header, int64_t size, int footer, int sorted) {
    put_header(header, (uint32_t)size, 1);
    if (footer) put_footer(header, (uint32_t)size);
    index_insert((uint32_t)header, (uint32_t)size, sorted);
    blk_add((struct block){(uint32_t)header, (uint32_t)size, 0, 1});
}

static void new_hole(int64_t header, int64_t size) { hole_at(header, size, 1, 1); }

/* The first header >= hole whose payload is page aligned, the gap 0 or >= MIN_BLOCK. */
static int64_t aligned_header(int64_t hole) {
#ifdef BUG_ALIGN
    int64_t header = align_up(hole); /* aligns the header, not the payload */
#else
    int64_t header = align_up(hole + HDR) - HDR;
#endif
#ifdef BUG_ALIGN_GAP
    return header; /* a gap of 1..19 bytes becomes a hole too small for its header and footer */
#else
    return header - hole > 0 && header - hole < MIN_BLOCK ? header + PAGE : header;
#endif
}

static int64_t block_header(int64_t hole, int page_align) { return page_align ? aligned_header(hole) : hole; }

static int fits(int64_t hole, int64_t hole_size, int64_t size, int page_align) {
    return block_header(hole, page_align) + size + MIN_BLOCK <= hole + hole_size;
}

/* The index position of the first hole that fits; -1 when none. */
static int64_t find(int64_t size, int page_align) {
    for (size_t i = 0; i < heap.nholes; i++) {
#ifdef BUG_EXACT_FIT
        if (heap.index[i].size <= size + MIN_BLOCK) continue; /* an exact fit passed over */
#else
        if (heap.index[i].size < size + MIN_BLOCK) continue;
#endif
        if (!page_align) return (int64_t)i;
        if (fits(heap.index[i].header, heap.index[i].size, size, 1)) return (int64_t)i;
    }
    return -1;
}

/* Why AllocPage would refuse a page of [low, high) (the VMM's checks, in its order). */
static uint32_t placement_error(int64_t low, int64_t high, int supervisor) {
    for (int64_t page = low; page < high; page += PAGE) {
        if (!is_kernel_address(page) || !supervisor) return E_DENIED;
        if (pte_of(page) & PTE_P) return E_EXISTS;
    }
    return OK;
}

static int64_t frames_needed(int64_t low, int64_t high) {
    int64_t n = (high - low) / PAGE;
    for (int64_t slot = low >> 22; slot <= (high - 1) >> 22; slot++) n += !vm.table[slot];
    return n;
}

static void map_range(int64_t low, int64_t high) {
    for (int64_t page = low; page < high; page += PAGE)
        alloc_page((uint32_t)page, heap.supervisor, !heap.readonly);
}

static uint32_t growth_error(int64_t new_end) {
    struct block *t = tail();
    if (t && t->hole) {
        if (!intact(t->header, t->size, 1)) return E_TRASHED;
    } else if ((int64_t)heap.nholes >= heap.index_size) {
        return E_NOMEM;
    }
    uint32_t code = placement_error(heap.end, new_end, heap.supervisor);
    if (code == OK && !reserve_frames(frames_needed(heap.end, new_end))) code = E_NOMEM;
    return code;
}

/* Map [end, new_end); the trailing hole grows, or a new hole covers the pages. */
static void grow(int64_t new_end) {
    int64_t old_end = heap.end;
    map_range(old_end, new_end);
    heap.end = new_end;
    struct block *t = blk_ending(old_end);
    if (t && t->hole) {
        int64_t header = t->header;
        hole_remove(header);
        new_hole(header, new_end - header);
    } else {
        new_hole(old_end, new_end - old_end);
    }
}

/* heap_layout.contraction_length. */
static int64_t contraction_length(int64_t least, int64_t length, int64_t hole) {
    int64_t target = align_up(least > hole ? least : hole);
    if (target - hole > 0 && target - hole < MIN_BLOCK) target += PAGE;
    return target >= length ? length : target;
}

static int64_t cut_length(int64_t least) {
    struct block *t = tail();
    int64_t length = heap.end - heap.start;
    return contraction_length(least, length, t && t->hole ? t->header - heap.start : length);
}

/* Cut the heap to length bytes: the trailing hole shrinks or goes; pages past it are unmapped. */
static void cut(int64_t length) {
    int64_t new_end = heap.start + length, old_end = heap.end;
    while (heap.nblocks && heap.blocks[heap.nblocks - 1].header >= new_end) {
        struct block *last = &heap.blocks[heap.nblocks - 1];
        if (last->hole) hole_remove(last->header);
        else heap.nblocks--;
    }
    struct block *last = heap.nblocks ? &heap.blocks[heap.nblocks - 1] : NULL;
    if (last && last->hole && last->header + (int64_t)last->size > new_end) {
        int64_t header = last->header;
        hole_remove(header);
        new_hole(header, new_end - header);
    }
    spin_lock(&pm_lock); /* the pages go back at once: a count sees all or none */
    for (int64_t page = new_end; page < old_end; page += PAGE) unmap_page((uint32_t)page);
    spin_unlock(&pm_lock);
    heap.end = new_end;
}

static struct result heap_create(const struct arg *const *p) {
    if (heap.created) return res_bool(0, E_ALREADY);
    int64_t start = p[0]->num, end = p[1]->num, max = p[2]->num, index_size = p[5]->num;
    if (!(is_u32(p[0]) && is_u32(p[1]) && is_u32(p[2]) && start % PAGE == 0 && end % PAGE == 0
          && max % PAGE == 0 && start < end && end <= max && max <= HEAP_TOP && is_bool(p[3])
          && is_bool(p[4]) && is_int(p[5]) && index_size >= 1 && is_u32(p[6])
          && align_up(start + 4 * index_size) + MIN_BLOCK <= end))
        return res_bool(0, E_PARAM);
    if (!vm.ready) return res_bool(0, E_NOT_READY);
    uint32_t code = placement_error(start, max, (int)p[3]->num);
    if (code == OK && !reserve_frames(frames_needed(start, end))) code = E_NOMEM;
    if (code != OK) return res_bool(0, code);
    heap.supervisor = (int)p[3]->num, heap.readonly = (int)p[4]->num;
    map_range(start, end);
    heap.created = 1;
    heap.start = start, heap.end = end, heap.max = max, heap.index_size = index_size;
    heap.data_start = align_up(start + 4 * index_size);
    heap.min_size = p[6]->num > end - start ? p[6]->num : end - start;
    new_hole(heap.data_start, end - heap.data_start);
    return res_bool(1, OK);
}

static struct result heap_alloc(const struct arg *const *p) {
    if (!heap.created) return res_int(0, E_NOT_READY);
    int64_t size = p[0]->num, need = size + MIN_BLOCK;
#ifdef BUG_WRAP
    /* the block's size computed in 32 bits: size + header + footer wraps past 2^32 */
    if (!(is_u32(p[0]) && is_bool(p[1]))) return res_int(0, E_PARAM);
    need = (uint32_t)(size + MIN_BLOCK);
    int64_t requested = size;
    size = need - MIN_BLOCK;
#else
    if (!(is_int(p[0]) && size >= 0 && size <= 0xFFFFFFFFLL - MIN_BLOCK && is_bool(p[1])))
        return res_int(0, E_PARAM);
    int64_t requested = size;
#endif
    int page_align = (int)p[1]->num, fresh = 0;
    int64_t position = find(size, page_align), new_end = 0, hole, hole_size;
    if (position >= 0) {
        hole = heap.index[position].header, hole_size = heap.index[position].size;
        if (!intact(hole, (uint32_t)hole_size, 1)) return res_int(0, E_TRASHED);
    } else {
        int64_t wanted = align_up(heap.end - heap.start + need + (page_align ? PAGE : 0));
#ifdef BUG_PAST_MAX
        new_end = heap.start + wanted; /* not capped at the heap's max */
#else
        new_end = heap.start + (wanted > heap.max - heap.start ? heap.max - heap.start : wanted);
#endif
        struct block *t = tail();
        fresh = !(t && t->hole);
        hole = fresh ? heap.end : t->header;
        hole_size = new_end - hole;
        if (new_end == heap.end || !fits(hole, hole_size, size, page_align)) return res_int(0, E_NOMEM);
        uint32_t code = growth_error(new_end);
        if (code != OK) return res_int(0, code == E_TRASHED ? E_TRASHED : E_NOMEM);
    }
    int64_t header = block_header(hole, page_align), gap = header - hole;
    int64_t rest = hole_size - gap - need, block_size = need;
#if defined BUG_RACE_ALLOC && defined THREADS
    race_window(); /* the hole is chosen, not yet taken: another Alloc may choose it too */
#endif
#ifdef BUG_SPLIT_UNDERFLOW
    if (rest <= 0) /* splits off remainders of 1..19 bytes too */
#else
    if (rest < MIN_BLOCK)
#endif
        block_size += rest, rest = 0;
    if ((int64_t)heap.nholes + fresh - 1 + (gap > 0) + (rest > 0) > heap.index_size)
        return res_int(0, E_NOMEM);
    if (new_end) grow(new_end);
    hole_remove(hole);
    if (gap) new_hole(hole, gap);
    put_header(header, (uint32_t)block_size, 0);
    put_footer(header, (uint32_t)block_size);
    blk_add((struct block){(uint32_t)header, (uint32_t)block_size, (uint32_t)requested, 0});
    if (rest) new_hole(header + block_size, rest);
    return res_int(header + HDR, OK);
}

static struct result heap_free(const struct arg *const *p) {
    if (!heap.created) return res_bool(0, E_NOT_READY);
    int64_t header = is_int(p[0]) ? p[0]->num - HDR : -1;
    struct block *b = blk_at(header);
    if (!b || b->hole)
        return res_bool(0, b && header_is(header, b->size, 1) ? E_BLOCK : E_ADDRESS);
    int64_t size = b->size, right = header + size;
    struct block *rb = blk_at(right), *lb = blk_ending(header);
    int right_hole = rb && rb->hole, left_hole = lb && lb->hole;
    int64_t left = lb ? (int64_t)lb->header : -1;
    if (!(intact(header, (uint32_t)size, 0)
          && (right == heap.end || (rb && header_is(right, rb->size, right_hole)))
          && (left < 0 || footer_is(header - FTR, left))))
        return res_bool(0, E_TRASHED);
#ifdef BUG_INDEX_FULL
    if (!right_hole && !left_hole && (int64_t)heap.nholes > heap.index_size) /* off by one */
#else
    if (!right_hole && !left_hole && (int64_t)heap.nholes >= heap.index_size)
#endif
        return res_bool(0, E_NOMEM);
#if defined BUG_RACE_ALLOC && defined THREADS
    race_window(); /* the block is checked live, not yet freed: another Free may check it too */
#endif
    int64_t merged = header, merged_size = size;
    blk_del(header);
#ifdef BUG_BOTH_NEIGHBOURS
    if (right_hole && !left_hole) merged_size += hole_remove(right); /* the right one stays */
#else
    if (right_hole) merged_size += hole_remove(right);
#endif
    if (left_hole) merged = left, merged_size += hole_remove(left);
#ifdef BUG_STALE_FOOTER
    int footer = !left_hole; /* the merged hole keeps the freed block's old footer */
#else
    int footer = 1;
#endif
#ifdef BUG_INDEX_UNSORTED
    int sorted = 0; /* appended at the end of the index */
#else
    int sorted = 1;
#endif
    hole_at(merged, merged_size, footer, sorted);
    if (merged + merged_size == heap.end) {
        int64_t least = merged - heap.start > heap.min_size ? merged - heap.start : heap.min_size;
        int64_t length = cut_length(least);
        if (length < heap.end - heap.start) cut(length);
    }
    return res_bool(1, OK);
}

static struct result heap_expand(const struct arg *const *p) {
    if (!heap.created) return res_bool(0, E_NOT_READY);
    int64_t n = p[0]->num;
    if (!(is_int(p[0]) && n >= heap.end - heap.start && align_up(n) <= heap.max - heap.start))
        return res_bool(0, E_PARAM);
    int64_t new_end = heap.start + align_up(n);
    if (new_end == heap.end) return res_bool(1, OK);
    uint32_t code = growth_error(new_end);
    if (code != OK) return res_bool(0, code);
    grow(new_end);
    return res_bool(1, OK);
}

static struct result heap_contract(const struct arg *const *p) {
    if (!heap.created) return res_int(0, E_NOT_READY);
    int64_t n = p[0]->num, length = heap.end - heap.start;
    if (!(is_int(p[0]) && n >= 0 && n <= length)) return res_int(0, E_PARAM);
    int64_t least = n > heap.min_size ? n : heap.min_size;
#ifdef BUG_CONTRACT_LIVE
    int64_t target = contraction_length(least, length, 0); /* ignores where the live blocks end */
#else
    int64_t target = cut_length(least);
#endif
    if (target < length) {
        struct block *t = tail();
        if (t && t->hole && !intact(t->header, t->size, 1)) return res_int(0, E_TRASHED);
        cut(target);
    }
    return res_int(target, OK);
}

static struct result heap_find(const struct arg *const *p) {
    if (!heap.created) return res_int(-1, E_NOT_READY);
    int64_t size = p[0]->num;
    if (!(is_int(p[0]) && size >= 0 && size <= 0xFFFFFFFFLL - MIN_BLOCK && is_bool(p[1])))
        return res_int(-1, E_PARAM);
    return res_int(find(size, (int)p[1]->num), OK);
}

static struct result heap_block_size(const struct arg *const *p) {
    if (!heap.created) return res_int(0, E_NOT_READY);
    struct block *b = is_int(p[0]) ? blk_at(p[0]->num - HDR) : NULL;
    return b && !b->hole ? res_int(b->requested, OK) : res_int(0, E_ADDRESS);
}

/* ---- MemoryPool (model/memory_pool.py) --------------------------------------- */

/* Blocks of a stride (block_size rounded up to 4, at least 4) carved lazily from
 * one heap allocation, the arena; the free list threaded through the free blocks
 * in memory (a block's first 4 bytes name the next, 0 ends it), LIFO; live: one
 * byte per carved block, 1 when allocated. The pool's calls hold its lock
 * (memory-design.md line 146); Create allocates the arena under the heap's.
 * BUG_RACE_POOL: AllocBlock and FreeBlock without it, the window after AllocBlock
 * read the head (or the count carved) and after FreeBlock checked the block. */
static struct {
    int created;
    int64_t stride, max_blocks, current_blocks, arena, free_list;
    uint8_t *live;
} pool;

static struct result heap_alloc(const struct arg *const *p);
static struct result heap_call(op_fn fn, const struct arg *const *p);

static int64_t pool_index(int64_t address) { /* -1 off the arena or a boundary */
    int64_t offset = address - pool.arena;
    if (offset < 0 || offset >= pool.stride * pool.max_blocks || offset % pool.stride) return -1;
    return offset / pool.stride;
}

static int64_t peek_next(int64_t block) { /* -1 when unmapped */
    uint8_t raw[4];
    if (!vread(block, raw, 4)) return -1;
    return (int64_t)raw[0] | (int64_t)raw[1] << 8 | (int64_t)raw[2] << 16 | (int64_t)raw[3] << 24;
}

static struct result pool_create(const struct arg *const *p) {
    if (pool.created) return res_bool(0, E_ALREADY);
    int64_t size = p[0]->num, count = p[1]->num;
    if (!(is_u32(p[0]) && is_u32(p[1]) && size > 0 && count > 0)) return res_bool(0, E_PARAM);
    int64_t stride = size + (-size & 3);
    if (stride * count >= LIMIT) return res_bool(0, E_PARAM);
    if (heap.created && heap.readonly) return res_bool(0, E_DENIED);
    struct arg bytes = {"size", ARG_INT, stride * count, NULL}, align = {"page_align", ARG_BOOL, 0, NULL};
    struct result arena = heap_call(heap_alloc, (const struct arg *const[]){&bytes, &align});
    if (arena.error != OK) return res_bool(0, arena.error);
    pool.live = calloc((size_t)count, 1);
    if (!pool.live) abort();
    pool.created = 1, pool.stride = stride, pool.max_blocks = count, pool.arena = arena.value;
    pool.current_blocks = pool.free_list = 0;
    return res_bool(1, OK);
}

static struct result pool_alloc(const struct arg *const *p) {
    (void)p;
    if (!pool.created) return res_int(0, E_NOT_READY);
    int64_t head = pool.free_list;
    if (head) {
        int64_t after = peek_next(head), index = pool_index(after);
        if (after != 0 && (after == head || index < 0 || index >= pool.current_blocks
                           || pool.live[index]))
            return res_int(0, E_TRASHED);
#if defined BUG_RACE_POOL && defined THREADS
        race_window(); /* the head read, not yet popped: another AllocBlock may pop it too */
#endif
        pool.free_list = after;
        pool.live[pool_index(head)] = 1;
        return res_int(head, OK);
    }
    int64_t carved = pool.current_blocks;
    if (carved >= pool.max_blocks) return res_int(0, E_NOMEM);
#if defined BUG_RACE_POOL && defined THREADS
    race_window(); /* the next block chosen, not yet carved: another may carve it too */
#endif
    pool.live[carved] = 1;
    pool.current_blocks = carved + 1;
    return res_int(pool.arena + carved * pool.stride, OK);
}

static struct result pool_free(const struct arg *const *p) {
    if (!is_u32(p[0])) return res_bool(0, E_PARAM);
    if (!pool.created) return res_bool(0, E_NOT_READY);
    int64_t block = p[0]->num, index = pool_index(block);
    if (index < 0) return res_bool(0, E_ADDRESS);
    if (index >= pool.current_blocks || !pool.live[index]) return res_bool(0, E_BLOCK);
#if defined BUG_RACE_POOL && defined THREADS
    race_window(); /* live when checked: another FreeBlock may check it too */
#endif
    uint32_t next = (uint32_t)pool.free_list; /* x86: little endian */
    vwrite(block, (const uint8_t *)&next, 4);
    pool.free_list = block;
    pool.live[index] = 0;
    return res_bool(1, OK);
}

/* ---- dispatch ---------------------------------------------------------------- */

/* A KernelHeap call under the heap's lock (LOCKFREE_FRAMES: heap_seq odd while it
 * runs); the frames it reserved and did not map go back at its end. */
static struct result heap_call(op_fn fn, const struct arg *const *p) {
    spin_lock(&heap_lock);
#ifdef LOCKFREE_FRAMES
    atomic_fetch_add(&heap_seq, 1); /* odd: frames may be in flux */
#endif
    struct result r = fn(p);
    unreserve();
#ifdef LOCKFREE_FRAMES
    atomic_fetch_add(&heap_seq, 1);
#endif
    spin_unlock(&heap_lock);
    return r;
}

static const struct op {
    const char *manager, *name;
    op_fn fn;
    const char *params[8];
} OPS[] = {
    {"PageManager", "InitializePhysicalMemory", pm_init, {"mem_start", "mem_end"}},
    {"PageManager", "RequestFrame", pm_request, {"is_kernel", "is_writeable"}},
    {"PageManager", "FreeFrame", pm_free, {"frame_addr"}},
    {"PageManager", "FirstFreeFrame", pm_first, {0}},
    {"PageManager", "GetFrameCount", pm_count, {0}},
    {"PageManager", "GetFreeFrameCount", pm_free_count, {0}},
    {"PageManager", "GetUsedFrameCount", pm_used_count, {0}},
    {"VirtualMemoryManager", "InitializePaging", vm_init, {0}},
    {"VirtualMemoryManager", "WriteVirtualMemory", vm_write, {"virtual_addr", "data"}},
    {"KernelHeap", "Create", heap_create,
     {"start", "end", "max", "supervisor", "readonly", "index_size", "min_size"}},
    {"KernelHeap", "Alloc", heap_alloc, {"size", "page_align"}},
    {"KernelHeap", "Free", heap_free, {"p"}},
    {"KernelHeap", "Expand", heap_expand, {"new_size"}},
    {"KernelHeap", "Contract", heap_contract, {"new_size"}},
    {"KernelHeap", "FindSmallestHole", heap_find, {"size", "page_align"}},
    {"KernelHeap", "GetBlockSize", heap_block_size, {"p"}},
    {"MemoryPool", "Create", pool_create, {"block_size", "max_blocks"}},
    {"MemoryPool", "AllocBlock", pool_alloc, {0}},
    {"MemoryPool", "FreeBlock", pool_free, {"block"}},
};

struct result mem_call(const char *manager, const char *op, const struct args *a) {
    for (size_t i = 0; manager && op && i < sizeof OPS / sizeof *OPS; i++) {
        const struct op *o = &OPS[i];
        if (strcmp(o->manager, manager) || strcmp(o->name, op)) continue;
        const struct arg *p[8];
        int n = 0;
        for (; o->params[n]; n++)
            if (!(p[n] = arg_named(a, o->params[n]))) return res_bool(0, E_PARAM);
        for (int j = 0; j < a->n; j++) { /* the args are exactly the parameters */
            int known = 0;
            for (int k = 0; k < n; k++) known |= !strcmp(o->params[k], a->v[j].key);
            if (!known) return res_bool(0, E_PARAM);
        }
        /* The heap's calls hold its lock (BUG_RACE_ALLOC: not Alloc and Free), the
         * pool's its own (BUG_RACE_POOL: not AllocBlock and FreeBlock). */
        int heap = !strcmp(manager, "KernelHeap"), in_pool = !strcmp(manager, "MemoryPool");
#if defined BUG_RACE_ALLOC && defined THREADS
        if (heap && !(strcmp(op, "Alloc") && strcmp(op, "Free"))) {
            struct result r = o->fn(p);
            unreserve();
            return r;
        }
#endif
#if defined BUG_RACE_POOL && defined THREADS
        in_pool = in_pool && !strcmp(op, "Create");
#endif
        if (heap) return heap_call(o->fn, p);
        if (in_pool) spin_lock(&pool_lock);
        struct result r = o->fn(p);
        if (in_pool) spin_unlock(&pool_lock);
        return r;
    }
    return res_bool(0, E_PARAM);
}

/* ---- observations -------------------------------------------------------------- */

static void obs_frame_counts(const struct args *a, struct buf *o) {
    (void)a;
    buf_printf(o, "{\"frames\":%u,\"free\":%u,\"used\":%u}", pm.nframes, free_count(), used_count());
}

static void obs_frame_bitmap(const struct args *a, struct buf *o) {
    (void)a;
    const char *sep = "";
    buf_put(o, "{\"used\":[", 9);
    for (uint32_t f = 0; f < pm.nframes;) {
        if (!frame_used(f)) {
            f++;
            continue;
        }
        uint32_t first = f;
        while (f < pm.nframes && frame_used(f)) f++;
        put_array(o, sep, (uint32_t[]){first, f - first}, 2);
        sep = ",";
    }
    buf_put(o, "]}", 2);
}

static void obs_page_tables(const struct args *a, struct buf *o) {
    (void)a;
    const char *sep = "";
    buf_printf(o, "{\"directory\":%u,\"pdes\":[", vm.ready ? vm.dir_frame : 0);
    for (uint32_t s = 0; s < 1024; s++)
        if (vm.table[s] && vm.pde[s] & PTE_P)
            put_array(o, sep, (uint32_t[]){s, vm.pde[s] & ~AD_BITS}, 2), sep = ",";
    buf_put(o, "],\"ptes\":[", 10);
    sep = "";
    for (uint32_t s = 0; s < 1024; s++)
        for (uint32_t i = 0; vm.table[s] && vm.pde[s] & PTE_P && i < 1024; i++)
            if (vm.table[s][i])
                put_array(o, sep, (uint32_t[]){s, i, vm.table[s][i] & ~AD_BITS}, 3), sep = ",";
    buf_put(o, "]}", 2);
}

static int64_t num_arg(const struct args *a, const char *key) {
    const struct arg *x = arg_named(a, key);
    return x ? x->num : -1;
}

static void obs_virtual_to_physical(const struct args *a, struct buf *o) {
    int64_t va = num_arg(a, "virtual_addr");
    uint32_t e = pte_of(va);
    buf_printf(o, "{\"physical\":%u}", e & PTE_P ? (e & 0xFFFFF000u) | (uint32_t)(va & 0xFFF) : NO_FRAME);
}

static void obs_read_bytes(const struct args *a, struct buf *o) {
    int64_t va = num_arg(a, "virtual_addr"), n = num_arg(a, "length");
    uint8_t data[PAGE];
    if (!(n >= 0 && n <= PAGE && va >= 0 && va <= LIMIT - n) || !vread(va, data, (size_t)n)) {
        buf_put(o, "{\"data\":null}", 13);
        return;
    }
    char hex[2 * PAGE];
    for (int64_t i = 0; i < n; i++) {
        hex[2 * i] = "0123456789abcdef"[data[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[data[i] & 15];
    }
    buf_put(o, "{\"data\":\"", 9);
    buf_put(o, hex, (size_t)(2 * n));
    buf_put(o, "\"}", 2);
}

static void obs_heap_walk(const struct args *a, struct buf *o) {
    (void)a;
    const char *tf[2] = {"false", "true"}, *sep = "";
    buf_printf(o, "{\"created\":%s,\"start\":%lld,\"end\":%lld,\"max\":%lld,\"data_start\":%lld,",
               tf[heap.created], (long long)heap.start, (long long)heap.end, (long long)heap.max,
               (long long)heap.data_start);
    buf_printf(o, "\"index_size\":%lld,\"min_size\":%lld,\"supervisor\":%s,\"readonly\":%s,\"blocks\":[",
               (long long)heap.index_size, (long long)heap.min_size, tf[heap.supervisor],
               tf[heap.readonly]);
    for (int64_t at = heap.data_start; heap.created && at < heap.end;) {
        uint8_t raw[HDR];
        uint32_t magic, size, footer[2] = {0, 0};
        if (!vread(at, raw, HDR)) break;
        memcpy(&magic, raw, 4), memcpy(&size, raw + 8, 4);
        if (size < FTR || at + size > heap.end || !vread(at + size - FTR, (uint8_t *)footer, FTR))
            footer[0] = footer[1] = 0;
        buf_printf(o, "%s{\"header\":%lld,\"magic\":%u,\"hole\":%s,\"size\":%u,\"footer_magic\":%u,"
                   "\"footer_header\":%u}", sep, (long long)at, magic, tf[raw[4] == 1], size,
                   footer[0], footer[1]);
        sep = ",";
        if (size < MIN_BLOCK || at + size > heap.end) break;
        at += size;
    }
    buf_put(o, "]}", 2);
}

static void obs_hole_index(const struct args *a, struct buf *o) {
    (void)a;
    buf_put(o, "{\"holes\":[", 10);
    for (size_t i = 0; i < heap.nholes; i++)
        put_array(o, i ? "," : "", (uint32_t[]){heap.index[i].size, heap.index[i].header}, 2);
    buf_put(o, "]}", 2);
}

/* The pool's free list, head first, read from memory (the model's free_blocks):
 * none when it is corrupt (a block off the carved ones, a live one, a cycle). */
static void obs_pool_free_list(const struct args *a, struct buf *o) {
    (void)a;
    const char *sep = "";
    int64_t block = pool.created ? pool.free_list : 0, n = 0;
    for (; block && n <= pool.current_blocks; n++) {
        int64_t index = pool_index(block);
        if (index < 0 || index >= pool.current_blocks || pool.live[index]) break;
        block = peek_next(block);
    }
    buf_put(o, "{\"blocks\":[", 11);
    for (int64_t i = 0, at = pool.free_list; !block && i < n; i++, at = peek_next(at))
        buf_printf(o, "%s%lld", sep, (long long)at), sep = ",";
    buf_printf(o, "],\"carved\":%lld}", (long long)pool.current_blocks);
}

static const struct observation {
    const char *name;
    void (*fn)(const struct args *a, struct buf *o);
} OBSERVATIONS[] = {
    {"FrameCounts", obs_frame_counts}, {"FrameBitmap", obs_frame_bitmap},
    {"PageTables", obs_page_tables}, {"VirtualToPhysical", obs_virtual_to_physical},
    {"ReadBytes", obs_read_bytes}, {"HeapWalk", obs_heap_walk}, {"HoleIndex", obs_hole_index},
    {"PoolFreeList", obs_pool_free_list},
};

int mem_observe(const char *name, const struct args *a, struct buf *out) {
    for (size_t i = 0; i < sizeof OBSERVATIONS / sizeof *OBSERVATIONS; i++)
        if (!strcmp(OBSERVATIONS[i].name, name)) {
            OBSERVATIONS[i].fn(a, out);
            return 1;
        }
    return 0;
}
