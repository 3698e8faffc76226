/* Where the messages of a find-processing-messages answer are, found in C.
 *
 * Decoding an answer into msgspec structs was the largest part of a poll's
 * CPU (docs/development.md, "Performance"), although the exporter reads only
 * seven short values of each message. frame() checks the whole answer is JSON
 * and finds those values: one pass over the bytes that builds no Python object
 * but one table of offsets (_pageframe.h), which _pagesum.c's sum_frame() reads.
 *
 * It takes a strict subset of JSON, and the answer shape of every real page:
 *
 *   {"meta": ..., "data": [{"messages": [{...}, ...]}, ...], "fail": ...}
 *
 * Anything else it does not judge: a key with an escape, a key twice, nesting
 * deeper than MAX_DEPTH, a "\u" escape of a surrogate, bytes that are not
 * UTF-8, or anything that is not JSON makes frame() return None, and the page
 * is decoded by msgspec as before (mimecast_exporter/mimecast/pages.py), which accepts
 * or refuses it and says why. So frame() never accepts an answer msgspec would
 * refuse: tests/test_pageframe.py holds it to that with generated and broken
 * answers.
 */
#include "_pageframe.h"

#include <string.h>

#define MAX_DEPTH 64
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* The scanner's steps, inlined into their few callers: a call per string
 * was a fifth of the instructions. */
#if defined(__GNUC__)
#define INLINE inline __attribute__((always_inline))
#else
#define INLINE inline
#endif

typedef struct {
    const unsigned char *base, *p, *end;
    int depth;
    uint32_t *rows; /* FRAME_COLUMNS per message */
    Py_ssize_t n_rows, capacity;
} Scanner;

/* Bytes a string may hold as they are: printable ASCII but '"' and '\\'. */
enum { PLAIN, QUOTE, BACKSLASH, CONTROL, HIGH };
static unsigned char string_class[256];

static void init_classes(void) {
    for (int c = 0; c < 256; c++)
        string_class[c] = c < 0x20 ? CONTROL : c >= 0x80 ? HIGH : PLAIN;
    string_class['"'] = QUOTE;
    string_class['\\'] = BACKSLASH;
}

/* The hot loops work on local pointers: s->p could alias the bytes read
 * (they are unsigned char), so the compiler would reload it at every byte. */
static INLINE void skip_space(Scanner *s) {
    const unsigned char *p = s->p, *end = s->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    s->p = p;
}

static int hex_digit(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* One UTF-8 sequence of 2 to 4 bytes, well formed (no overlong form, no
 * surrogate, nothing above U+10FFFF). */
static int skip_utf8(Scanner *s) {
    const unsigned char *p = s->p;
    Py_ssize_t left = s->end - p;
    unsigned char c = p[0];
    int n;
    unsigned char low = 0x80, high = 0xBF; /* the range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) low = 0xA0;
        if (c == 0xED) high = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) low = 0x90;
        if (c == 0xF4) high = 0x8F;
    } else
        return 0;
    if (left < n || p[1] < low || p[1] > high) return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    s->p += n;
    return 1;
}

/* A string, s->p on its opening quote. *escaped: whether it holds an escape. */
static INLINE int skip_string(Scanner *s, int *escaped) {
    const unsigned char *p = s->p + 1, *end = s->end;
    *escaped = 0;
    for (;;) {
        /* Eight bytes at a time while none of them is special (a quote, a
         * backslash, a control byte or a high byte); a false alarm only sends
         * those eight bytes to the byte loop. */
        while (end - p >= 8) {
            uint64_t v, quote, backslash;
            memcpy(&v, p, 8);
            quote = v ^ (ONES * '"');
            backslash = v ^ (ONES * '\\');
            uint64_t special = ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash) |
                               ((v - ONES * 0x20) & ~v) | v;
            if (special & HIGHS) break;
            p += 8;
        }
        while (p < end && string_class[*p] == PLAIN) p++;
        if (p >= end) return 0;
        switch (string_class[*p]) {
        case QUOTE:
            s->p = p + 1;
            return 1;
        case BACKSLASH:
            *escaped = 1;
            if (end - p < 2) return 0;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u':
                if (end - p < 6 || !hex_digit(p[2]) || !hex_digit(p[3]) || !hex_digit(p[4]) ||
                    !hex_digit(p[5]))
                    return 0;
                /* \uD800-\uDFFF: surrogates, lone or paired; left to msgspec. */
                if ((p[2] == 'd' || p[2] == 'D') &&
                    ((p[3] >= '8' && p[3] <= '9') || (p[3] >= 'a' && p[3] <= 'f') ||
                     (p[3] >= 'A' && p[3] <= 'F')))
                    return 0;
                p += 6;
                break;
            default:
                return 0;
            }
            break;
        case HIGH:
            s->p = p;
            if (!skip_utf8(s)) return 0;
            p = s->p;
            break;
        default: /* a control character must be escaped */
            return 0;
        }
    }
}

static int skip_digits(Scanner *s) {
    const unsigned char *start = s->p, *p = s->p, *end = s->end;
    while (p < end && *p >= '0' && *p <= '9') p++;
    s->p = p;
    return p > start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int skip_number(Scanner *s) {
    if (*s->p == '-') s->p++;
    if (s->p >= s->end) return 0;
    if (*s->p == '0')
        s->p++;
    else if (!skip_digits(s))
        return 0;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!skip_digits(s)) return 0;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (!skip_digits(s)) return 0;
    }
    return 1;
}

static int skip_literal(Scanner *s, const char *word, Py_ssize_t n) {
    if (s->end - s->p < n || memcmp(s->p, word, (size_t)n) != 0) return 0;
    s->p += n;
    return 1;
}

static int skip_value(Scanner *s);

/* After an element or a member: "," (then more) or the closing byte. 1: more,
 * 0: closed, -1: neither. */
static INLINE int next_or_close(Scanner *s, unsigned char close) {
    skip_space(s);
    if (s->p >= s->end) return -1;
    if (*s->p == ',') {
        s->p++;
        skip_space(s);
        return 1;
    }
    if (*s->p == close) {
        s->p++;
        return 0;
    }
    return -1;
}

static int enter(Scanner *s) {
    if (++s->depth > MAX_DEPTH) return 0;
    s->p++; /* the opening byte */
    skip_space(s);
    return 1;
}

/* A key and its colon, s->p on the key's quote. *key, *length: the key's
 * characters; an escaped key is refused (it could spell a field's name). */
static INLINE int read_key(Scanner *s, const unsigned char **key, Py_ssize_t *length) {
    if (s->p >= s->end || *s->p != '"') return 0;
    const unsigned char *start = s->p + 1;
    int escaped;
    if (!skip_string(s, &escaped) || escaped) return 0;
    *key = start;
    *length = s->p - 1 - start;
    skip_space(s);
    if (s->p >= s->end || *s->p != ':') return 0;
    s->p++;
    skip_space(s);
    return s->p < s->end;
}

static int key_is(const unsigned char *key, Py_ssize_t length, const char *name) {
    return (Py_ssize_t)strlen(name) == length && memcmp(key, name, (size_t)length) == 0;
}

/* What reads one member of an object (s->p on its value) or one element of
 * an array: 1 read, 0 not in the subset frame() takes, -1 an error is set. */
typedef int (*MemberReader)(Scanner *s, const unsigned char *key, Py_ssize_t length, void *context);
typedef int (*ElementReader)(Scanner *s);

/* An object, s->p on its "{", each member read by `member`. */
static INLINE int each_member(Scanner *s, MemberReader member, void *context) {
    if (!enter(s)) return 0;
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        s->depth--;
        return 1;
    }
    for (;;) {
        const unsigned char *key;
        Py_ssize_t length;
        if (!read_key(s, &key, &length)) return 0;
        int read = member(s, key, length, context); /* read_key: s->p on a byte */
        if (read <= 0) return read;
        int more = next_or_close(s, '}');
        if (more < 0) return 0;
        if (!more) break;
    }
    s->depth--;
    return 1;
}

/* An array, s->p on its "[", each element read by `element`. */
static INLINE int each_element(Scanner *s, ElementReader element) {
    if (!enter(s)) return 0;
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        s->depth--;
        return 1;
    }
    for (;;) {
        if (s->p >= s->end) return 0;
        int read = element(s); /* s->p on a byte of the answer */
        if (read <= 0) return read;
        int more = next_or_close(s, ']');
        if (more < 0) return 0;
        if (!more) break;
    }
    s->depth--;
    return 1;
}

static int skip_member(Scanner *s, const unsigned char *key, Py_ssize_t length, void *context) {
    (void)key, (void)length, (void)context;
    return skip_value(s);
}

static int skip_value(Scanner *s) {
    if (s->p >= s->end) return 0;
    int escaped;
    switch (*s->p) {
    case '{': return each_member(s, skip_member, NULL);
    case '[': return each_element(s, skip_value);
    case '"': return skip_string(s, &escaped);
    case 't': return skip_literal(s, "true", 4);
    case 'f': return skip_literal(s, "false", 5);
    case 'n': return skip_literal(s, "null", 4);
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) return skip_number(s);
        return 0;
    }
}

/* The column of a message's key, or -1 for a field not read. */
static int column_of(const unsigned char *key, Py_ssize_t length) {
    switch (length) {
    case 4:
        if (memcmp(key, "size", 4) == 0) return FRAME_SIZE;
        if (memcmp(key, "info", 4) == 0) return FRAME_INFO;
        return -1;
    case 7:
        if (memcmp(key, "routing", 7) == 0) return FRAME_ROUTING;
        if (memcmp(key, "created", 7) == 0) return FRAME_CREATED;
        return -1;
    case 8:
        return memcmp(key, "attempts", 8) == 0 ? FRAME_ATTEMPTS : -1;
    case 11:
        if (memcmp(key, "nextAttempt", 11) == 0) return FRAME_NEXT_ATTEMPT;
        if (memcmp(key, "lockedUntil", 11) == 0) return FRAME_LOCKED_UNTIL;
        return -1;
    default:
        return -1;
    }
}

static uint32_t *new_row(Scanner *s) {
    if (s->n_rows == s->capacity) {
        Py_ssize_t capacity = s->capacity ? 2 * s->capacity : 512;
        uint32_t *rows = PyMem_Realloc(s->rows, (size_t)capacity * FRAME_COLUMNS * sizeof(uint32_t));
        if (rows == NULL) return NULL;
        s->rows = rows;
        s->capacity = capacity;
    }
    uint32_t *row = s->rows + s->n_rows++ * FRAME_COLUMNS;
    memset(row, 0, FRAME_COLUMNS * sizeof(uint32_t));
    return row;
}

/* A member of a message: where the value of a field read starts, in `row`. */
static int message_member(Scanner *s, const unsigned char *key, Py_ssize_t length, void *row) {
    int column = column_of(key, length);
    if (column >= 0) {
        uint32_t *cell = (uint32_t *)row + column;
        if (*cell) return 0; /* twice: which one counts is msgspec's call */
        *cell = (uint32_t)(s->p - s->base);
    }
    return skip_value(s);
}

/* A message: a row of the table. -1: out of memory (an error is set). */
static int read_message(Scanner *s) {
    if (*s->p != '{') return 0; /* not a message: msgspec's path */
    uint32_t *row = new_row(s);
    if (row == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* No row is added before this one is done (a message's values are only
     * skipped), so `row` stays where it is. */
    row[FRAME_START] = (uint32_t)(s->p - s->base);
    int read = each_member(s, message_member, row);
    row[FRAME_END] = (uint32_t)(s->p - s->base);
    return read;
}

/* A member of an item of "data": its "messages", null or an array of them. */
static int item_member(Scanner *s, const unsigned char *key, Py_ssize_t length, void *seen) {
    if (!key_is(key, length, "messages")) return skip_value(s);
    if ((*(int *)seen)++) return 0; /* twice */
    if (*s->p == 'n') return skip_literal(s, "null", 4);
    return *s->p == '[' ? each_element(s, read_message) : 0;
}

static int read_item(Scanner *s) {
    int seen = 0;
    return *s->p == '{' ? each_member(s, item_member, &seen) : 0;
}

typedef struct {
    Py_ssize_t meta[2], fail[2];
    int data;
} Answer;

/* A member of the answer: "data" read, "meta" and "fail" found, not read. */
static int answer_member(Scanner *s, const unsigned char *key, Py_ssize_t length, void *answer) {
    Answer *a = answer;
    Py_ssize_t *span = key_is(key, length, "meta") ? a->meta : key_is(key, length, "fail") ? a->fail : NULL;
    if (span != NULL) {
        if (span[0] >= 0) return 0; /* twice */
        span[0] = s->p - s->base;
        if (!skip_value(s)) return 0;
        span[1] = s->p - s->base;
        return 1;
    }
    if (!key_is(key, length, "data")) return skip_value(s);
    if (a->data++) return 0; /* twice */
    return *s->p == '[' ? each_element(s, read_item) : 0;
}

/* The answer: an object with "data", and nothing but spaces after it. */
static int read_answer(Scanner *s, Answer *answer) {
    skip_space(s);
    if (s->p >= s->end || *s->p != '{') return 0;
    int read = each_member(s, answer_member, answer);
    if (read <= 0) return read;
    skip_space(s);
    return answer->data && s->p == s->end;
}

static PyObject *span_or_none(const Py_ssize_t *span) {
    if (span[0] < 0) Py_RETURN_NONE;
    return Py_BuildValue("(nn)", span[0], span[1]);
}

PyObject *pageframe_frame(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer body;
    if (!PyArg_ParseTuple(args, "y*", &body)) return NULL;
    if (string_class['"'] != QUOTE) init_classes();
    PyObject *result = NULL;
    if (body.len >= (Py_ssize_t)UINT32_MAX) { /* offsets are 32 bits: msgspec's path */
        PyBuffer_Release(&body);
        Py_RETURN_NONE;
    }
    Scanner s = {body.buf, body.buf, (const unsigned char *)body.buf + body.len, 0, NULL, 0, 0};
    Answer answer = {{-1, -1}, {-1, -1}, 0};
    int read = read_answer(&s, &answer);
    if (read < 0) goto done;
    if (read == 0) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    PyObject *table = PyBytes_FromStringAndSize(
        (const char *)s.rows, s.n_rows * FRAME_COLUMNS * (Py_ssize_t)sizeof(uint32_t));
    if (table == NULL) goto done;
    result = Py_BuildValue("(NNN)", span_or_none(answer.meta), span_or_none(answer.fail), table);
done:
    PyMem_Free(s.rows);
    PyBuffer_Release(&body);
    return result;
}
