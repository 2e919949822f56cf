/* memspec_oracle.h: the protocol side of an implementation judged by the memspec
 * oracle (proofs/oracle/PROTOCOL.md), in one header: reading requests, writing
 * replies and the hello, turning a panic or a fault inside a call into a failed
 * call, and placing memory at its real virtual address. You write only the calls
 * into your code (docs/implementers-kit.md has a worked example).
 *
 *   In exactly one .c file, before any other #include:
 *     #define MEMSPEC_ORACLE_IMPLEMENTATION
 *     #include "memspec_oracle.h"
 *   Everywhere else just #include "memspec_oracle.h".
 *
 * Needs C11 and POSIX (sigsetjmp, sigaction, sigaltstack, mmap); Linux, the BSDs
 * and macOS. The implementation part defines _DEFAULT_SOURCE and _DARWIN_C_SOURCE
 * (the POSIX and MAP_ANONYMOUS declarations under -std=c11) unless already set.
 *
 * The loop (mo_serve) prints the hello, then reads one request a line from stdin
 * and answers each on stdout in order, flushing whenever no complete request is
 * left unanswered (the oracle may send several before reading: strict mode
 * pipelines). Every call and observation runs under a guard: SIGSEGV, SIGBUS,
 * SIGILL, SIGFPE and SIGABRT (assert) raised inside it, or mo_panic() called
 * inside it, end that call only: a line saying what happened goes to stderr (the
 * oracle shows it beside the step) and the reply is the failure MO_ERROR_FAULT or
 * MO_ERROR_PANIC (an observation: "observed": null). Your state may be broken
 * afterwards; the oracle usually stops the sequence there (a failure where the
 * spec wants success), and every sequence starts a fresh process. */
#ifndef MEMSPEC_ORACLE_H
#define MEMSPEC_ORACLE_H

#ifdef MEMSPEC_ORACLE_IMPLEMENTATION
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif
#ifndef _DARWIN_C_SOURCE
#define _DARWIN_C_SOURCE 1
#endif
#endif

#include <stddef.h>
#include <stdint.h>

#define MEMSPEC_ORACLE_PROTOCOL 1
/* The protocol of an implementation that runs threads concurrently (PROTOCOL.md,
 * "Concurrency (protocol 3)"): mo_implementation.threads > 0, and
 * MEMSPEC_ORACLE_THREADS defined before the implementation part (link with -pthread). */
#define MEMSPEC_ORACLE_PROTOCOL_THREADS 3

/* ---- requests ------------------------------------------------------------------ */

/* One request argument as it arrived: a JSON integer, boolean or (hex) string. */
enum { MO_INT, MO_BOOL, MO_STR, MO_OTHER };
struct mo_arg {
    const char *key;
    int kind;
    int64_t num;     /* MO_INT's value (-2^31..2^33), or 0/1 for MO_BOOL */
    const char *str; /* MO_STR, NUL-terminated (the oracle sends hex and names only) */
};
#define MO_MAX_ARGS 16
struct mo_args {
    int n;
    struct mo_arg v[MO_MAX_ARGS];
};

/* A parsed request: an operation (manager and op set) or an observation (observe
 * set). The strings point into the line, which mo_parse changes in place. */
struct mo_request {
    int64_t id;
    int64_t thread; /* protocol 3: the request's thread (1..threads); 0 when absent */
    const char *manager, *op, *observe;
    struct mo_args args;
};

/* Parse one line; 0 when it holds no object (a blank line). */
int mo_parse(char *line, struct mo_request *request);
/* The argument named key (the last one, as a JSON object keeps it), or NULL. */
const struct mo_arg *mo_arg_named(const struct mo_args *args, const char *key);
/* The integer argument key into *out (bools are not integers); 0 if absent or not one. */
int mo_int_arg(const struct mo_args *args, const char *key, int64_t *out);
/* Decode a hex string into out (at most cap bytes): the length, or -1 (odd, not hex, too long). */
long mo_hex_decode(const char *hex, uint8_t *out, size_t cap);

/* ---- replies ---------------------------------------------------------------------- */

/* An operation's reply: a JSON boolean or integer result and the error code
 * (PROTOCOL.md: GetLastError's value, the DOS/XMS/EMS code or errno). */
enum { MO_RES_BOOL, MO_RES_INT, MO_RES_UNSUPPORTED };
struct mo_result {
    int kind;
    int64_t value;
    uint32_t error;
};
static inline struct mo_result mo_bool(int value, uint32_t error) {
    return (struct mo_result){MO_RES_BOOL, value != 0, error};
}
static inline struct mo_result mo_int(int64_t value, uint32_t error) {
    return (struct mo_result){MO_RES_INT, value, error};
}
/* "I do not implement this operation": the oracle counts it as skipped, never as
 * a pass or a divergence (PROTOCOL.md, "Unsupported operations"). */
static inline struct mo_result mo_unsupported(void) {
    return (struct mo_result){MO_RES_UNSUPPORTED, 0, 0};
}
/* Whether PROTOCOL.md's op of manager returns a JSON boolean (else a number). */
int mo_returns_bool(const char *manager, const char *op);

/* Error codes of a call that faulted or panicked (Windows' ERROR_NOACCESS and
 * ERROR_INTERNAL_ERROR). */
#define MO_ERROR_FAULT 998u
#define MO_ERROR_PANIC 1359u

/* A growable output buffer: an observation appends one JSON object to it. */
struct mo_buf {
    char *p;
    size_t len, cap;
};
void mo_buf_put(struct mo_buf *b, const char *s, size_t n);
void mo_buf_printf(struct mo_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append sep, then the JSON array of the n <= 8 unsigned numbers v (without printf). */
void mo_buf_u32s(struct mo_buf *b, const char *sep, const uint32_t *v, int n);
/* Append "data":"<hex>" of n bytes, or "data":null when data is NULL. */
void mo_buf_hex(struct mo_buf *b, const uint8_t *data, size_t n);

/* ---- the implementation ----------------------------------------------------------- */

struct mo_implementation {
    const char *name; /* the hello's "implementation" */
    /* NULL-terminated lists of PROTOCOL.md's names: the managers and observations
     * served, the operations never to be sent ("Manager.Op"), the managers'
     * parts served ("DosMemoryManager.conventional"; NULL: every part). */
    const char *const *managers, *const *observations, *const *unsupported, *const *parts;
    /* The hello's "config" (PROTOCOL.md, "Configuration"): a JSON object's text, as
     * {"kernel":{"index_size":131072}}, written as given; NULL: the defaults. */
    const char *config;
    /* An operation; return mo_unsupported() for one you do not implement. */
    struct mo_result (*call)(const char *manager, const char *op, const struct mo_args *args);
    /* Append the observation's JSON object to out; 0 when you do not serve it. */
    int (*observe)(const char *name, const struct mo_args *args, struct mo_buf *out);
    /* Protocol 3 (needs MEMSPEC_ORACLE_THREADS): the threads it runs concurrently,
     * each request with a "thread" on that OS thread, timed by CLOCK_MONOTONIC; your
     * calls must then be thread-safe. 0: protocol 1, one request at a time. */
    int threads;
};

/* Serve the oracle on stdin/stdout until stdin closes; the exit status. */
int mo_serve(const struct mo_implementation *implementation);
/* The hello line (with its newline) of an implementation. */
void mo_hello(struct mo_buf *out, const struct mo_implementation *implementation);
/* Answer one request line into out (what mo_serve does for each line, guard included). */
void mo_handle(const struct mo_implementation *implementation, char *line, struct mo_buf *out);

/* ---- panics and faults --------------------------------------------------------------- */

/* Your kernel's panic(): inside a call, the call fails with MO_ERROR_PANIC and the
 * message goes to stderr; outside one, the process exits with status 70. */
_Noreturn void mo_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether a call or observation is running under the guard now. */
int mo_guarded(void);

/* ---- memory at its real virtual address ----------------------------------------------- */

/* Map len bytes of zeroed anonymous memory at exactly virtual address va (page
 * aligned), readable, and writable when asked: a kernel heap at 0xC0000000 is then
 * at 0xC0000000 and its pointers are the addresses the oracle sees. Never
 * replaces a mapping: NULL (and a line on stderr) when the range is taken or
 * outside what this process may map. */
void *mo_map_at(uint64_t va, size_t len, int writable);
/* Unmap, or change to read-only / read-write, pages mapped by mo_map_at; 0 on success. */
int mo_unmap_at(uint64_t va, size_t len);
int mo_protect_at(uint64_t va, size_t len, int writable);

/* ================================================================================== */
#ifdef MEMSPEC_ORACLE_IMPLEMENTATION

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* -- parsing: flat objects of int, bool and escape-free string values, and one
 *    nested object, "args" (all the oracle sends) -- */

static void mo__ws(char **s) { *s += strspn(*s, " \t\r\n"); }

static char *mo__string(char **s) { /* the string at *s, NUL-terminated in place */
    char *start = ++*s;
    if (*(*s += strcspn(*s, "\""))) *(*s)++ = 0;
    return start;
}

static void mo__value(char **s, struct mo_arg *a) {
    char *end;
    a->kind = MO_BOOL, a->num = 0, a->str = "";
    if (**s == '"') a->kind = MO_STR, a->str = mo__string(s);
    else if (!strncmp(*s, "true", 4)) a->num = 1, *s += 4;
    else if (!strncmp(*s, "false", 5)) *s += 5;
    else if ((a->num = strtoll(*s, &end, 10)), end != *s) a->kind = MO_INT, *s = end;
    else a->kind = MO_OTHER, *s += strcspn(*s, ",}"); /* null, or what is not the protocol's */
}

static void mo__object(char **s, struct mo_args *a, struct mo_args *inner) {
    for (++*s, mo__ws(s); **s == '"'; mo__ws(s)) {
        struct mo_arg *x = &a->v[a->n < MO_MAX_ARGS ? a->n++ : MO_MAX_ARGS - 1];
        x->key = mo__string(s);
        mo__ws(s), *s += **s == ':', mo__ws(s);
        if (**s == '{' && inner) x->kind = MO_OTHER, mo__object(s, inner, NULL);
        else mo__value(s, x);
        mo__ws(s), *s += **s == ',';
    }
    *s += **s == '}';
}

const struct mo_arg *mo_arg_named(const struct mo_args *a, const char *key) {
    const struct mo_arg *found = NULL;
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->v[i].key, key)) found = &a->v[i];
    return found;
}

int mo_int_arg(const struct mo_args *a, const char *key, int64_t *out) {
    const struct mo_arg *x = mo_arg_named(a, key);
    if (!x || x->kind != MO_INT) return 0;
    *out = x->num;
    return 1;
}

static const char *mo__text(const struct mo_args *a, const char *key) {
    const struct mo_arg *x = mo_arg_named(a, key);
    return x && x->kind == MO_STR ? x->str : NULL;
}

int mo_parse(char *line, struct mo_request *r) {
    struct mo_args top = {0};
    memset(r, 0, sizeof *r);
    mo__ws(&line);
    if (*line != '{') return 0;
    mo__object(&line, &top, &r->args);
    const struct mo_arg *id = mo_arg_named(&top, "id");
    const struct mo_arg *thread = mo_arg_named(&top, "thread");
    r->id = id ? id->num : 0;
    r->thread = thread && thread->kind == MO_INT ? thread->num : 0;
    r->manager = mo__text(&top, "manager"), r->op = mo__text(&top, "op");
    r->observe = mo__text(&top, "observe");
    return 1;
}

static int mo__hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

long mo_hex_decode(const char *hex, uint8_t *out, size_t cap) {
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = mo__hex_digit(hex[2 * i]), lo = mo__hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

/* -- output -- */

void mo_buf_put(struct mo_buf *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 4096;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void mo_buf_printf(struct mo_buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        mo_buf_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) abort();
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    mo_buf_put(b, big, (size_t)n);
    free(big);
}

void mo_buf_u32s(struct mo_buf *b, const char *sep, const uint32_t *v, int n) {
    char tmp[128], *p = tmp;
    while (*sep && p < tmp + 16) *p++ = *sep++;
    *p++ = '[';
    for (int i = 0; i < n && i < 8; i++) {
        char digits[10];
        int k = 0;
        uint32_t u = v[i];
        do digits[k++] = (char)('0' + u % 10); while (u /= 10);
        if (i) *p++ = ',';
        while (k) *p++ = digits[--k];
    }
    *p++ = ']';
    mo_buf_put(b, tmp, (size_t)(p - tmp));
}

void mo_buf_hex(struct mo_buf *b, const uint8_t *data, size_t n) {
    static const char digits[] = "0123456789abcdef";
    if (!data) {
        mo_buf_put(b, "\"data\":null", 11);
        return;
    }
    mo_buf_put(b, "\"data\":\"", 8);
    for (size_t i = 0; i < n; i++) {
        char pair[2] = {digits[data[i] >> 4], digits[data[i] & 15]};
        mo_buf_put(b, pair, 2);
    }
    mo_buf_put(b, "\"", 1);
}

/* The operations of PROTOCOL.md whose result is a JSON boolean
 * (tests/test_implementers_kit.py keeps this list equal to the oracle's). */
static const char *const mo__bool_ops[] = {
    "DosMemoryManager.EmsDeallocate", "DosMemoryManager.EmsMap",
    "DosMemoryManager.FreeDosMemory", "DosMemoryManager.FreeEmsPages",
    "DosMemoryManager.FreeXmsMemory", "DosMemoryManager.GetUmbLink",
    "DosMemoryManager.Initialize", "DosMemoryManager.MapEmsPageToPhysical",
    "DosMemoryManager.ResizeDosMemory", "DosMemoryManager.SetAllocationStrategy",
    "DosMemoryManager.SetUmbLink", "DosMemoryManager.WriteMemory",
    "DosMemoryManager.XmsFree", "DosMemoryManager.XmsMove", "DosMemoryManager.XmsReallocate",
    "DosMemoryManager.XmsUnlock", "KernelHeap.Create", "KernelHeap.Expand", "KernelHeap.Free",
    "MemoryMappedFiles.SyncMappedFile", "MemoryMappedFiles.UnmapFileFromMemory",
    "PageManager.FreeFrame", "PageManager.InitializePhysicalMemory",
    "SharedMemoryManager.DestroySharedMemory",
    "SharedMemoryManager.UnmapSharedMemoryFromProcess", "SystemCalls.DestroyProcess",
    "SystemCalls.ExecuteUserMemory", "SystemCalls.ReadUserMemory", "SystemCalls.SwitchProcess",
    "SystemCalls.WriteUserMemory", "VirtualMemoryManager.InitializePaging",
    "VirtualMemoryManager.WriteVirtualMemory", NULL};

int mo_returns_bool(const char *manager, const char *op) {
    size_t m = strlen(manager);
    for (const char *const *x = mo__bool_ops; *x; x++)
        if (!strncmp(*x, manager, m) && (*x)[m] == '.' && !strcmp(*x + m + 1, op)) return 1;
    return 0;
}

static void mo__string_out(struct mo_buf *o, const char *text) { /* a JSON string */
    mo_buf_put(o, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)text; c && *c; c++) {
        if (*c == '"' || *c == '\\') mo_buf_printf(o, "\\%c", *c);
        else if (*c < 0x20) mo_buf_printf(o, "\\u%04x", *c);
        else mo_buf_put(o, (const char *)c, 1);
    }
    mo_buf_put(o, "\"", 1);
}

static void mo__names(struct mo_buf *o, const char *key, const char *const *names) {
    mo_buf_printf(o, ",\"%s\":[", key);
    for (int i = 0; names && names[i]; i++) {
        if (i) mo_buf_put(o, ",", 1);
        mo__string_out(o, names[i]);
    }
    mo_buf_put(o, "]", 1);
}

void mo_hello(struct mo_buf *o, const struct mo_implementation *im) {
    if (im->threads > 0)
        mo_buf_printf(o, "{\"protocol\":%d,\"threads\":%d,\"implementation\":",
                      MEMSPEC_ORACLE_PROTOCOL_THREADS, im->threads);
    else mo_buf_printf(o, "{\"protocol\":%d,\"implementation\":", MEMSPEC_ORACLE_PROTOCOL);
    mo__string_out(o, im->name ? im->name : "?");
    mo__names(o, "managers", im->managers);
    mo__names(o, "observations", im->observations);
    if (im->unsupported && im->unsupported[0]) mo__names(o, "unsupported", im->unsupported);
    if (im->parts && im->parts[0]) mo__names(o, "parts", im->parts);
    if (im->config) mo_buf_printf(o, ",\"config\":%s", im->config);
    mo_buf_put(o, "}\n", 2);
}

/* -- the guard -- */

/* One guard per thread (protocol 3 runs calls on several): a fault is raised on
 * the thread that faulted, which jumps back into its own call. */
static _Thread_local sigjmp_buf mo__jump;
static _Thread_local volatile sig_atomic_t mo__armed;
/* The request being answered, for the stderr line (pointers into its line). */
static sigset_t mo__mask; /* the signal mask outside the handler */
static _Thread_local int64_t mo__id;
static _Thread_local const char *mo__first, *mo__dot, *mo__second;
static const int mo__signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

int mo_guarded(void) { return mo__armed; }

static size_t mo__hex_text(char *p, uintptr_t v) { /* async-signal-safe %#x */
    char digits[2 * sizeof v];
    size_t k = 0, n = 2;
    do digits[k++] = "0123456789abcdef"[v & 15]; while (v >>= 4);
    p[0] = '0', p[1] = 'x';
    while (k) p[n++] = digits[--k];
    return n;
}

static void mo__on_signal(int sig, siginfo_t *info, void *context) {
    (void)context;
    if (!mo__armed) { /* not inside a call: die of it as usual */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    mo__armed = 0;
    char line[320], id[24];
    size_t n = 0, k = 0;
    const char *name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS"
                     : sig == SIGILL ? "SIGILL" : sig == SIGFPE ? "SIGFPE" : "SIGABRT";
    uint64_t v = mo__id < 0 ? 0 : (uint64_t)mo__id; /* async-signal-safe %lld */
    do id[k++] = (char)('0' + v % 10); while (v /= 10);
    for (size_t i = 0; i < k / 2; i++) {
        char t = id[i];
        id[i] = id[k - 1 - i], id[k - 1 - i] = t;
    }
    id[k] = 0;
    const char *parts[] = {"memspec_oracle: ", name, " in #", id, " ", mo__first, mo__dot,
                           mo__second};
    for (size_t i = 0; i < 8; i++)
        for (const char *c = parts[i]; *c && n < 240; c++) line[n++] = *c;
    if (sig != SIGABRT && info) {
        memcpy(line + n, " at address ", 12), n += 12;
        n += mo__hex_text(line + n, (uintptr_t)info->si_addr);
    }
    line[n++] = '\n';
    ssize_t ignored = write(2, line, n);
    (void)ignored;
    sigprocmask(SIG_SETMASK, &mo__mask, NULL); /* abort() may have blocked signals */
    siglongjmp(mo__jump, sig);
}

static void mo__install(void) {
    static int done;
    static char stack[1 << 16]; /* the handler's own stack: a stack overflow faults too */
    if (done) return;
    done = 1;
    sigprocmask(SIG_SETMASK, NULL, &mo__mask);
    stack_t alt = {.ss_sp = stack, .ss_size = sizeof stack, .ss_flags = 0};
    sigaltstack(&alt, NULL);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = mo__on_signal;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < sizeof mo__signals / sizeof *mo__signals; i++)
        sigaction(mo__signals[i], &action, NULL);
}

_Noreturn void mo_panic(const char *fmt, ...) {
    va_list ap;
    if (mo__armed)
        fprintf(stderr, "memspec_oracle: panic in #%lld %s%s%s: ", (long long)mo__id, mo__first,
                mo__dot, mo__second);
    else fputs("memspec_oracle: panic outside a call: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    if (!mo__armed) exit(70);
    mo__armed = 0;
    siglongjmp(mo__jump, -1);
}

/* -- answering -- */

/* CLOCK_MONOTONIC in nanoseconds: a protocol 3 reply's invocation and response times. */
static int64_t mo__now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The reply's opening: its id, and a protocol 3 request's thread. */
static void mo__open(struct mo_buf *out, const struct mo_request *r) {
    if (r->thread > 0)
        mo_buf_printf(out, "{\"id\":%lld,\"thread\":%lld,", (long long)r->id, (long long)r->thread);
    else mo_buf_printf(out, "{\"id\":%lld,", (long long)r->id);
}

/* The reply's end: a protocol 3 request's invocation and response times. */
static void mo__close(struct mo_buf *out, const struct mo_request *r, int64_t invoked) {
    if (r->thread > 0)
        mo_buf_printf(out, ",\"invoked\":%lld,\"returned\":%lld", (long long)invoked,
                      (long long)mo__now());
    mo_buf_put(out, "}\n", 2);
}

/* Answer a parsed request into out, under the guard. */
static void mo__answer(const struct mo_implementation *im, struct mo_request *rp,
                       struct mo_buf *out) {
    struct mo_request r = *rp;
    size_t mark = out->len;
    mo__id = r.id;
    mo__first = r.observe ? "observe" : r.manager ? r.manager : "?";
    mo__dot = r.observe ? " " : ".";
    mo__second = r.observe ? r.observe : r.op ? r.op : "?";
    mo__open(out, &r);
    /* No signal mask to save: the handler runs with none added (SA_NODEFER, an
     * empty sa_mask), so jumping out of it leaves the mask as it was. */
    volatile int64_t invoked = mo__now();
    int sig = sigsetjmp(mo__jump, 0);
    if (sig != 0) { /* it faulted or panicked: what it wrote so far is dropped */
        out->len = mark;
        mo__open(out, &r);
        if (r.observe) mo_buf_put(out, "\"observed\":null", 15);
        else mo_buf_printf(out, r.manager && r.op && mo_returns_bool(r.manager, r.op)
                           ? "\"result\":false,\"error\":%u" : "\"result\":0,\"error\":%u",
                           sig == -1 ? MO_ERROR_PANIC : MO_ERROR_FAULT);
        mo__close(out, &r, invoked);
        return;
    }
    mo__armed = 1;
    if (r.observe) {
        mo_buf_put(out, "\"observed\":", 11);
        if (!im->observe || !im->observe(r.observe, &r.args, out)) mo_buf_put(out, "null", 4);
    } else {
        struct mo_result res = r.manager && r.op && im->call ? im->call(r.manager, r.op, &r.args)
                                                             : mo_unsupported();
        if (res.kind == MO_RES_UNSUPPORTED) mo_buf_put(out, "\"unsupported\":true", 18);
        else if (res.kind == MO_RES_BOOL)
            mo_buf_printf(out, "\"result\":%s,\"error\":%u", res.value ? "true" : "false",
                          res.error);
        else mo_buf_printf(out, "\"result\":%lld,\"error\":%u", (long long)res.value, res.error);
    }
    mo__armed = 0;
    mo__close(out, &r, invoked);
}

void mo_handle(const struct mo_implementation *im, char *line, struct mo_buf *out) {
    struct mo_request r;
    mo__install();
    if (!mo_parse(line, &r)) return; /* a blank line */
    mo__answer(im, &r, out);
}

static int mo__flush(struct mo_buf *out) {
    for (size_t done = 0; done < out->len;) {
        ssize_t n = write(1, out->p + done, out->len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        done += (size_t)n;
    }
    out->len = 0;
    return 1;
}

#ifdef MEMSPEC_ORACLE_THREADS
/* -- protocol 3: each thread's requests on its own OS thread -- */

#include <pthread.h>

struct mo__job {
    struct mo__job *next;
    char *line; /* the request's own copy: r's strings point into it */
    struct mo_request r;
};
struct mo__worker {
    pthread_t id;
    pthread_cond_t wake;
    struct mo__job *head, *tail;
    const struct mo_implementation *im;
};
static pthread_mutex_t mo__queue_lock = PTHREAD_MUTEX_INITIALIZER; /* queues, mo__busy */
static pthread_mutex_t mo__out_lock = PTHREAD_MUTEX_INITIALIZER;   /* stdout */
static pthread_cond_t mo__idle = PTHREAD_COND_INITIALIZER;
static int mo__busy; /* requests queued or running on the threads */

static void *mo__work(void *arg) {
    struct mo__worker *w = arg;
    stack_t alt = {.ss_sp = malloc(1 << 16), .ss_size = 1 << 16, .ss_flags = 0};
    if (alt.ss_sp) sigaltstack(&alt, NULL); /* each thread's handler stack is its own */
    struct mo_buf out = {0};
    for (;;) {
        pthread_mutex_lock(&mo__queue_lock);
        while (!w->head) pthread_cond_wait(&w->wake, &mo__queue_lock);
        struct mo__job *job = w->head;
        if (!(w->head = job->next)) w->tail = NULL;
        pthread_mutex_unlock(&mo__queue_lock);
        mo__answer(w->im, &job->r, &out);
        pthread_mutex_lock(&mo__out_lock);
        int written = mo__flush(&out);
        pthread_mutex_unlock(&mo__out_lock);
        free(job->line);
        free(job);
        if (!written) exit(1);
        pthread_mutex_lock(&mo__queue_lock);
        if (--mo__busy == 0) pthread_cond_broadcast(&mo__idle);
        pthread_mutex_unlock(&mo__queue_lock);
    }
    return NULL;
}

static void mo__quiesce(void) { /* until no request is queued or running */
    pthread_mutex_lock(&mo__queue_lock);
    while (mo__busy) pthread_cond_wait(&mo__idle, &mo__queue_lock);
    pthread_mutex_unlock(&mo__queue_lock);
}

/* One request line: to its thread's queue, or (no thread: set-up calls and
 * observations) answered here once every thread is idle. 0 when stdout failed. */
static int mo__dispatch(const struct mo_implementation *im, struct mo__worker *workers,
                        const char *line, struct mo_buf *out) {
    struct mo__job *job = malloc(sizeof *job);
    if (!job || !(job->line = strdup(line))) abort();
    job->next = NULL;
    if (!mo_parse(job->line, &job->r)) {
        free(job->line);
        free(job);
        return 1;
    }
    int64_t t = job->r.thread;
    if (t >= 1 && t <= im->threads) {
        struct mo__worker *w = &workers[t - 1];
        pthread_mutex_lock(&mo__queue_lock);
        mo__busy++;
        if (w->tail) w->tail->next = job;
        else w->head = job;
        w->tail = job;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&mo__queue_lock);
        return 1;
    }
    mo__quiesce();
    job->r.thread = 0; /* a thread id out of range is answered here, as protocol 1 */
    mo__answer(im, &job->r, out);
    pthread_mutex_lock(&mo__out_lock);
    int written = mo__flush(out);
    pthread_mutex_unlock(&mo__out_lock);
    free(job->line);
    free(job);
    return written;
}

static int mo__serve_threads(const struct mo_implementation *im) {
    static struct mo_buf out;
    size_t cap = 1 << 16, len = 0;
    char *in = malloc(cap), *line, *nl;
    struct mo__worker *workers = calloc((size_t)im->threads, sizeof *workers);
    if (!in || !workers) return 1;
    mo__install(); /* the handlers, once, before any thread runs */
    for (int i = 0; i < im->threads; i++) {
        workers[i].im = im;
        pthread_cond_init(&workers[i].wake, NULL);
        if (pthread_create(&workers[i].id, NULL, mo__work, &workers[i])) return 1;
    }
    mo_hello(&out, im);
    if (!mo__flush(&out)) return 1;
    for (ssize_t n = 1; n > 0; len += (size_t)n) {
        for (line = in; (nl = memchr(line, '\n', len - (size_t)(line - in))); line = nl + 1)
            if (*nl = 0, !mo__dispatch(im, workers, line, &out)) return 1;
        memmove(in, line, len -= (size_t)(line - in));
        if (len + 1 >= cap && !(in = realloc(in, cap *= 2))) return 1;
        while ((n = read(0, in + len, cap - len - 1)) < 0 && errno == EINTR) {}
        if (n < 0) n = 0;
    }
    in[len] = 0;
    int written = mo__dispatch(im, workers, in, &out); /* a last line without its newline */
    mo__quiesce();
    return written ? 0 : 1;
}
#endif

int mo_serve(const struct mo_implementation *im) {
    static struct mo_buf out;
    if (im->threads > 0) {
#ifdef MEMSPEC_ORACLE_THREADS
        return mo__serve_threads(im);
#else
        fputs("memspec_oracle: threads > 0 needs MEMSPEC_ORACLE_THREADS (and -pthread)\n",
              stderr);
        return 1;
#endif
    }
    size_t cap = 1 << 16, len = 0;
    char *in = malloc(cap), *line, *nl;
    if (!in) return 1;
    mo_hello(&out, im);
    for (ssize_t n = 1; n > 0; len += (size_t)n) {
        for (line = in; (nl = memchr(line, '\n', len - (size_t)(line - in))); line = nl + 1)
            *nl = 0, mo_handle(im, line, &out);
        memmove(in, line, len -= (size_t)(line - in));
        if (len + 1 >= cap && !(in = realloc(in, cap *= 2))) return 1;
        if (!mo__flush(&out)) return 1; /* every complete request answered: send, then block */
        while ((n = read(0, in + len, cap - len - 1)) < 0 && errno == EINTR) {}
        if (n < 0) n = 0;
    }
    in[len] = 0, mo_handle(im, in, &out); /* a last line without its newline */
    return mo__flush(&out) ? 0 : 1;
}

/* -- memory at its real address -- */

void *mo_map_at(uint64_t va, size_t len, int writable) {
    long page = sysconf(_SC_PAGESIZE);
    if (va % (uint64_t)page || va + len < va || (sizeof(void *) == 4 && va + len > 1ull << 32)) {
        fprintf(stderr, "memspec_oracle: cannot map %#llx+%#zx: not page aligned or past the "
                "address space\n", (unsigned long long)va, len);
        return NULL;
    }
    void *want = (void *)(uintptr_t)va;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#ifdef MAP_FIXED_NOREPLACE
    flags |= MAP_FIXED_NOREPLACE; /* Linux 4.17+; an older kernel takes it as a hint */
#endif
    void *got = mmap(want, len, PROT_READ | (writable ? PROT_WRITE : 0), flags, -1, 0);
    if (got == want) return got;
    int why = errno;
    if (got != MAP_FAILED) munmap(got, len); /* placed elsewhere: the range is taken */
    fprintf(stderr, "memspec_oracle: cannot map %#llx+%#zx at its address: %s\n",
            (unsigned long long)va, len, got == MAP_FAILED ? strerror(why) : "range in use");
    return NULL;
}

int mo_unmap_at(uint64_t va, size_t len) { return munmap((void *)(uintptr_t)va, len); }

int mo_protect_at(uint64_t va, size_t len, int writable) {
    return mprotect((void *)(uintptr_t)va, len, PROT_READ | (writable ? PROT_WRITE : 0));
}

#endif /* MEMSPEC_ORACLE_IMPLEMENTATION */
#endif /* MEMSPEC_ORACLE_H */
