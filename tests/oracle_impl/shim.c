/* shim.c: the oracle protocol (proofs/oracle/PROTOCOL.md) over memimpl.h: JSON Lines on
 * stdin and stdout. It parses only what the oracle sends: flat objects of int, bool and
 * escape-free string values, and one nested object, "args". */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "memimpl.h"

static struct buf out;

static void flush(void) {
    for (ssize_t n, done = 0; done < (ssize_t)out.len; done += n)
        if ((n = write(1, out.p + done, out.len - (size_t)done)) <= 0) exit(1);
    out.len = 0;
}
static void ws(char **s) { *s += strspn(*s, " \t\r\n"); }
static char *string(char **s) { /* the string at *s, NUL-terminated in place; *s moves past it */
    char *start = ++*s;
    if (*(*s += strcspn(*s, "\""))) *(*s)++ = 0;
    return start;
}

static void value(char **s, struct arg *a) {
    char *end;
    a->kind = ARG_BOOL, a->num = 0, a->str = "";
    if (**s == '"') a->kind = ARG_STR, a->str = string(s);
    else if (!strncmp(*s, "true", 4)) a->num = 1, *s += 4;
    else if (!strncmp(*s, "false", 5)) *s += 5;
    else if ((a->num = strtoll(*s, &end, 10)), end != *s) a->kind = ARG_INT, *s = end;
    else a->kind = ARG_OTHER, *s += strcspn(*s, ",}"); /* null */
}

/* The members of the object at *s into a; those of a nested object into *inner. */
static void object(char **s, struct args *a, struct args *inner) {
    for (++*s, ws(s); **s == '"'; ws(s)) {
        struct arg *x = &a->v[a->n < MAX_ARGS ? a->n++ : MAX_ARGS - 1];
        x->key = string(s);
        ws(s), *s += **s == ':', ws(s);
        if (**s == '{' && inner) x->kind = ARG_OTHER, object(s, inner, NULL);
        else value(s, x);
        ws(s), *s += **s == ',';
    }
    *s += **s == '}';
}

static const char *text(const struct args *a, const char *key) { /* a string member or NULL */
    const struct arg *x = arg_named(a, key);
    return x && x->kind == ARG_STR ? x->str : NULL;
}

/* A request, {"id":N,"manager":M,"op":O,"args":{...}} or {"id":N,"observe":X,"args":{...}}. */
static void handle(char *s) {
    struct args top = {0}, args = {0};
    if (*(s += strspn(s, " \t\r\n")) != '{') return; /* a blank line */
    object(&s, &top, &args);
    const struct arg *id = arg_named(&top, "id");
    const char *observe = text(&top, "observe");
    buf_printf(&out, "{\"id\":%lld,", id ? (long long)id->num : 0LL);
    if (observe) {
        buf_put(&out, "\"observed\":", 11);
        if (!mem_observe(observe, &args, &out)) buf_put(&out, "null", 4);
        buf_put(&out, "}\n", 2);
    } else {
        struct result r = mem_call(text(&top, "manager"), text(&top, "op"), &args);
        if (r.kind == RES_BOOL) buf_printf(&out, "\"result\":%s,", r.value ? "true" : "false");
        else buf_printf(&out, "\"result\":%lld,", (long long)r.value);
        buf_printf(&out, "\"error\":%u}\n", r.error);
    }
}

/* MEMIMPL_CONFIG=real: the tutorial heap's own constants (an index of 0x20000
 * entries, a min size of 0x70000, a 1 MB initial heap) on 4096 frames,
 * declared in the hello (PROTOCOL.md, "Configuration"). */
static const char real_config[] = ",\"config\":{\"kernel\":{\"mem_end\":16777216,"
    "\"heap_start\":3221225472,\"heap_end\":3222274048,\"heap_max\":3489656832,"
    "\"index_size\":131072,\"min_size\":458752}}";

int main(void) {
    static const char hello[] = "{\"protocol\":1,\"implementation\":\"memspec C test impl\","
        "\"managers\":[\"PageManager\",\"VirtualMemoryManager\",\"KernelHeap\"],\"observations\":"
        "[\"FrameCounts\",\"FrameBitmap\",\"PageTables\",\"VirtualToPhysical\",\"ReadBytes\","
        "\"HeapWalk\",\"HoleIndex\"]";
    const char *config = getenv("MEMIMPL_CONFIG");
    size_t cap = 1 << 16, len = 0;
    char *in = malloc(cap), *line, *nl;
    buf_put(&out, hello, sizeof hello - 1);
    if (config && !strcmp(config, "real")) buf_put(&out, real_config, sizeof real_config - 1);
    buf_put(&out, "}\n", 2);
    for (ssize_t n = 1; n > 0; len += (size_t)n) {
        for (line = in; (nl = memchr(line, '\n', len - (size_t)(line - in))); line = nl + 1)
            *nl = 0, handle(line);
        memmove(in, line, len -= (size_t)(line - in));
        if (len + 1 >= cap && !(in = realloc(in, cap *= 2))) return 1;
        flush(); /* every complete request is answered: send the replies before blocking */
        if ((n = read(0, in + len, cap - len - 1)) < 0) n = 0;
    }
    in[len] = 0, handle(in); /* a last line without '\n' */
    flush();
    return 0;
}
