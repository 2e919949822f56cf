/* memimpl: a C implementation of memspec's PageManager, kernel directory and
 * KernelHeap (the seed's sections 1-3), written for the oracle's own test.
 * It replies as model/page_manager.py, model/virtual_memory.py and
 * model/kernel_heap.py do; shim.c speaks proofs/oracle/PROTOCOL.md over it. */
#ifndef MEMIMPL_H
#define MEMIMPL_H

#include <stddef.h>
#include <stdint.h>

/* One request argument as it arrived: a JSON int, bool or string. */
enum { ARG_INT, ARG_BOOL, ARG_STR, ARG_OTHER };
struct arg {
    const char *key;
    int kind;
    int64_t num;     /* ARG_INT value, or 0/1 for ARG_BOOL */
    const char *str; /* ARG_STR, NUL-terminated */
};
#define MAX_ARGS 16
struct args {
    int n;
    struct arg v[MAX_ARGS];
};

/* A reply's result (a JSON bool or int) and the manager's last_error. */
enum { RES_BOOL, RES_INT };
struct result {
    int kind;
    int64_t value;
    uint32_t error;
};

/* A growable output buffer. */
struct buf {
    char *p;
    size_t len, cap;
};
void buf_put(struct buf *b, const char *s, size_t n);
void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The argument named key (the last one, as a JSON object keeps it), or NULL. */
const struct arg *arg_named(const struct args *a, const char *key);
/* Run an operation of a manager (unknown op or wrong arg names: false,
 * ERROR_INVALID_PARAMETER; manager and op may be NULL). */
struct result mem_call(const char *manager, const char *op, const struct args *a);
/* Append the JSON object an observation yields; 0 for an unknown observation. */
int mem_observe(const char *name, const struct args *a, struct buf *out);

#endif
