/* One page of well-formed messages, summed in C.
 *
 * mimecast_exporter.aggregate.QueueAggregator.add_each runs Python bytecode for every
 * message: about two microseconds each, as much CPU as the rest of a poll
 * together (see docs/development.md, "Performance"). This module does the same
 * sums for a page whose every message is well formed, as nearly every page of
 * a real answer is, at a few per cent of that.
 *
 * It never judges a value: anything it does not take exactly as the Python
 * loop would (a route spelled unusually, a count that is not a plain integer,
 * a date not in one of the UTC spellings DateParser's fast path takes, a date
 * with another zone) makes summarize() return None, and the page goes to the
 * Python loop, which counts it value by value and says what was wrong.
 * tests/test_pagesum.py feeds both the same pages and compares every figure.
 *
 * Optional: without a C compiler the wheel is built without it, and the
 * exporter gives the same figures at the loop's cost.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_pageframe.h"
#include <datetime.h>
#include <structmember.h>
#include <string.h>

#define N_ROUTES 4
#define N_FIELDS 7
#define MAX_BOUNDS 32
#define MAX_STATUSES 64
#define MAX_KEEP 64

/* Field order of mimecast_exporter.mimecast.pages.Message, as looked up by name. */
static const char *FIELD_NAMES[N_FIELDS] = {
    "routing", "size", "attempts", "created", "info", "next_attempt", "locked_until",
};
enum { ROUTING, SIZE, ATTEMPTS, CREATED, INFO, NEXT_ATTEMPT, LOCKED_UNTIL };

typedef struct {
    long long messages, size, attempts, max_attempts;
    long long size_counts[MAX_BOUNDS + 1], age_counts[MAX_BOUNDS + 1];
    double age_sum; /* the route's running sum, this page's ages added on */
    double oldest;
    long long statuses[MAX_STATUSES];
    PyObject *misses; /* info -> count, for values status_cache does not hold */
    long long locked, overdue, lock_unknown, retry_unknown;
} RouteSums;

typedef struct {
    double created;
    Py_ssize_t index;
} Candidate;

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), Howard Hinnant's algorithm. */
static long long days_from_civil(long long y, unsigned m, unsigned d) {
    y -= m <= 2;
    const long long era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static int days_in_month(long long y, int m) {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return days[m - 1];
}

static int digits(const char *p, int n, int *out) {
    int value = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        value = value * 10 + (p[i] - '0');
    }
    *out = value;
    return 1;
}

/* Epoch seconds of "YYYY-MM-DDTHH:MM:SS" (or a space for the T) followed by
 * "+0000", "+00:00", "Z" or nothing: the spellings DateParser's fast path
 * takes (mimecast_exporter/dates.py, UTC_SECONDS), with the same checks. 0: not one. */
static int parse_created_chars(const char *p, Py_ssize_t length, double *out) {
    if (length < 19) return 0;
    const char *tail = p + 19;
    Py_ssize_t rest = length - 19;
    if (!(rest == 0 || (rest == 1 && tail[0] == 'Z') || (rest == 5 && memcmp(tail, "+0000", 5) == 0) ||
          (rest == 6 && memcmp(tail, "+00:00", 6) == 0)))
        return 0;
    if (p[4] != '-' || p[7] != '-' || (p[10] != 'T' && p[10] != ' ') || p[13] != ':' || p[16] != ':')
        return 0;
    int year, month, day, hour, minute, second;
    if (!digits(p, 4, &year) || !digits(p + 5, 2, &month) || !digits(p + 8, 2, &day) ||
        !digits(p + 11, 2, &hour) || !digits(p + 14, 2, &minute) || !digits(p + 17, 2, &second))
        return 0;
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
        hour > 23 || minute > 59 || second > 59)
        return 0;
    long long seconds = days_from_civil(year, (unsigned)month, (unsigned)day) * 86400LL +
                        hour * 3600LL + minute * 60LL + second;
    *out = (double)seconds;
    return 1;
}

static int parse_created(PyObject *text, double *out) {
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_COMPACT_ASCII(text)) return 0;
    return parse_created_chars((const char *)PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text), out);
}

/* Microseconds since the epoch of a UTC datetime; 0: not a datetime in UTC. */
static int utc_microseconds(PyObject *value, long long *out) {
    if (!PyDateTime_CheckExact(value)) return 0;
    if (PyDateTime_DATE_GET_TZINFO(value) != PyDateTime_TimeZone_UTC) return 0;
    long long days = days_from_civil(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value),
                                     PyDateTime_GET_DAY(value));
    long long seconds = days * 86400LL + PyDateTime_DATE_GET_HOUR(value) * 3600LL +
                        PyDateTime_DATE_GET_MINUTE(value) * 60LL + PyDateTime_DATE_GET_SECOND(value);
    *out = seconds * 1000000LL + PyDateTime_DATE_GET_MICROSECOND(value);
    return 1;
}

/* A count as the loop takes it on its fast path: an int (not a bool) from 0 to max. */
static int plain_count(PyObject *value, long long max, long long *out) {
    if (!PyLong_CheckExact(value)) return 0;
    int overflow = 0;
    long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || number == -1) { /* -1: negative, or an error (cleared) */
        PyErr_Clear();
        return 0;
    }
    if (number < 0 || number > max) return 0;
    *out = number;
    return 1;
}

/* bisect_left: the first bound >= value. */
static int bucket(const double *bounds, int n, double value) {
    int low = 0, high = n;
    while (low < high) {
        int mid = (low + high) / 2;
        if (bounds[mid] < value)
            low = mid + 1;
        else
            high = mid;
    }
    return low;
}

static int read_bounds(PyObject *tuple, double *out, int *n) {
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) > MAX_BOUNDS) {
        PyErr_SetString(PyExc_ValueError, "bounds: a tuple of at most 32 numbers");
        return 0;
    }
    *n = (int)PyTuple_GET_SIZE(tuple);
    for (int i = 0; i < *n; i++) {
        out[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(tuple, i));
        if (out[i] == -1.0 && PyErr_Occurred()) return 0;
    }
    return 1;
}

static PyObject *counts_tuple(const long long *counts, int n) {
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *count = PyLong_FromLongLong(counts[i]);
        if (count == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, i, count);
    }
    return tuple;
}

static PyObject *route_tuple(RouteSums *r, int n_size, int n_age, int n_statuses) {
    PyObject *size_counts = counts_tuple(r->size_counts, n_size + 1);
    PyObject *age_counts = counts_tuple(r->age_counts, n_age + 1);
    PyObject *statuses = counts_tuple(r->statuses, n_statuses);
    PyObject *result = NULL;
    if (size_counts && age_counts && statuses)
        result = Py_BuildValue("(LLLLOOddOOLLLL)", r->messages, r->size, r->attempts,
                               r->max_attempts, size_counts, age_counts, r->age_sum, r->oldest,
                               statuses, r->misses, r->locked, r->overdue, r->lock_unknown,
                               r->retry_unknown);
    Py_XDECREF(size_counts);
    Py_XDECREF(age_counts);
    Py_XDECREF(statuses);
    return result;
}

/* Keep the `keep` smallest (created, index), sorted, in `kept`. */
static void consider(Candidate *kept, int *count, int keep, double created, Py_ssize_t index) {
    if (*count == keep && !(created < kept[keep - 1].created)) return; /* later index loses ties */
    int at = *count < keep ? (*count)++ : keep - 1;
    while (at > 0 && created < kept[at - 1].created) {
        kept[at] = kept[at - 1];
        at--;
    }
    kept[at].created = created;
    kept[at].index = index;
}

static PyObject *increment(PyObject *counts, PyObject *key) {
    PyObject *old = PyDict_GetItemWithError(counts, key);
    if (old == NULL && PyErr_Occurred()) return NULL;
    long long value = old == NULL ? 0 : PyLong_AsLongLong(old);
    PyObject *new_value = PyLong_FromLongLong(value + 1);
    if (new_value == NULL) return NULL;
    int failed = PyDict_SetItem(counts, key, new_value);
    Py_DECREF(new_value);
    return failed ? NULL : Py_None;
}

/* What summing one page needs and builds, whichever form its messages take. */
typedef struct {
    PyObject *routes, *status_cache, *unset;
    double now, cut, newest;
    long long now_us, overdue_us, max_count;
    int n_statuses, keep, falls;
    double size_bounds[MAX_BOUNDS], age_bounds[MAX_BOUNDS];
    int n_size, n_age;
    RouteSums sums[N_ROUTES];
    Candidate kept[MAX_KEEP];
    int n_kept;
} PageSums;

/* Retry state of a message: no such field (unknown), null (none), or a date. */
enum { STATE_NONE, STATE_UNKNOWN, STATE_DATE };

/* The values of one well-formed message, as the loop takes them. */
typedef struct {
    long route;
    long long size, attempts;
    double created;
    int lock_state, next_state;
    long long lock_us, next_us;
} Values;

/* Arguments after the first two (the messages, in one form or the other). */
static int read_context(PyObject *args, PyObject **first, PyObject **second, PageSums *page) {
    PyObject *size_tuple, *age_tuple, *age_sums;
    memset(page, 0, sizeof *page);
    if (!PyArg_ParseTuple(args, "OOO!O!OdLLOOLiidpdO!", first, second, &PyDict_Type, &page->routes,
                          &PyDict_Type, &page->status_cache, &page->unset, &page->now,
                          &page->now_us, &page->overdue_us, &size_tuple, &age_tuple,
                          &page->max_count, &page->n_statuses, &page->keep, &page->newest,
                          &page->falls, &page->cut, &PyTuple_Type, &age_sums))
        return 0;
    if (PyTuple_GET_SIZE(age_sums) != N_ROUTES) {
        PyErr_SetString(PyExc_ValueError, "age_sums: one per route");
        return 0;
    }
    if (page->n_statuses < 1 || page->n_statuses > MAX_STATUSES || page->keep < 1 ||
        page->keep > MAX_KEEP) {
        PyErr_SetString(PyExc_ValueError, "statuses: 1 to 64; keep: 1 to 64");
        return 0;
    }
    if (!read_bounds(size_tuple, page->size_bounds, &page->n_size) ||
        !read_bounds(age_tuple, page->age_bounds, &page->n_age))
        return 0;
    for (int r = 0; r < N_ROUTES; r++) {
        page->sums[r].oldest = Py_HUGE_VAL;
        /* Ages are added on to the route's running sum, one by one as the loop
         * adds them: the same float operations, so the same sum to the last bit. */
        page->sums[r].age_sum = PyFloat_AsDouble(PyTuple_GET_ITEM(age_sums, r));
        if (page->sums[r].age_sum == -1.0 && PyErr_Occurred()) return 0;
    }
    return 1;
}

/* A route's index from the routes dict; -1: not a route (the loop's), -2: error. */
static long route_index(PageSums *page, PyObject *routing) {
    PyObject *index = PyDict_GetItemWithError(page->routes, routing);
    if (index == NULL) return PyErr_Occurred() ? -2 : -1;
    long route = PyLong_AsLong(index);
    if (route < 0 || route >= N_ROUTES) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "route index out of range");
        return -2;
    }
    return route;
}

/* The status_cache index of `info`; -1: not there (a miss), -2: an error. */
static long status_of(PageSums *page, PyObject *info) {
    PyObject *status =
        PyUnicode_CheckExact(info) ? PyDict_GetItemWithError(page->status_cache, info) : NULL;
    if (status == NULL) return PyErr_Occurred() ? -2 : -1;
    long index = PyLong_AsLong(status);
    if (index == -1 && PyErr_Occurred()) return -2;
    return index >= 0 && index < page->n_statuses ? index : -1;
}

/* A status_cache hit counted, else a miss counted under `info`. */
static int count_status_index(RouteSums *r, long index, PyObject *info) {
    if (index >= 0) {
        r->statuses[index]++;
        return 1;
    }
    if (r->misses == NULL && (r->misses = PyDict_New()) == NULL) return 0;
    return increment(r->misses, info) != NULL;
}

static int count_status(PageSums *page, RouteSums *r, PyObject *info) {
    long index = status_of(page, info);
    return index != -2 && count_status_index(r, index, info);
}

/* Everything but the status, for message number `index` of the page. */
static void count_values(PageSums *page, const Values *v, Py_ssize_t index) {
    RouteSums *r = &page->sums[v->route];
    if (v->lock_state == STATE_UNKNOWN)
        r->lock_unknown++;
    else if (v->lock_state == STATE_DATE && v->lock_us > page->now_us)
        r->locked++;
    if (v->next_state == STATE_UNKNOWN)
        r->retry_unknown++;
    else if (v->next_state == STATE_DATE && v->next_us < page->overdue_us)
        r->overdue++;
    r->messages++;
    r->size += v->size;
    r->size_counts[bucket(page->size_bounds, page->n_size, (double)v->size)]++;
    r->attempts += v->attempts;
    if (v->attempts > r->max_attempts) r->max_attempts = v->attempts;

    /* A message "from the future" (clock skew) is as young as can be. */
    double created = v->created;
    double age = created < page->now ? page->now - created : 0.0;
    r->age_counts[bucket(page->age_bounds, page->n_age, age)]++;
    r->age_sum += age;
    if (created < r->oldest) r->oldest = created;
    if (created < page->cut) consider(page->kept, &page->n_kept, page->keep, created, index);
    if (created >= page->newest)
        page->newest = created;
    else
        page->falls = 1; /* not in ascending order */
}

/* (route sums, newest, falls, [(created, index) of the page's oldest]). */
static PyObject *page_result(PageSums *page) {
    PyObject *route_sums = PyTuple_New(N_ROUTES);
    if (route_sums == NULL) return NULL;
    for (int r = 0; r < N_ROUTES; r++) {
        PyObject *item;
        if (page->sums[r].messages == 0) {
            item = Py_None;
            Py_INCREF(item);
        } else {
            if (page->sums[r].misses == NULL) {
                page->sums[r].misses = Py_None;
                Py_INCREF(Py_None);
            }
            item = route_tuple(&page->sums[r], page->n_size, page->n_age, page->n_statuses);
            if (item == NULL) {
                Py_DECREF(route_sums);
                return NULL;
            }
        }
        PyTuple_SET_ITEM(route_sums, r, item);
    }
    PyObject *candidates = PyList_New(page->n_kept);
    if (candidates == NULL) {
        Py_DECREF(route_sums);
        return NULL;
    }
    for (int k = 0; k < page->n_kept; k++) {
        PyObject *pair = Py_BuildValue("(dn)", page->kept[k].created, page->kept[k].index);
        if (pair == NULL) {
            Py_DECREF(route_sums);
            Py_DECREF(candidates);
            return NULL;
        }
        PyList_SET_ITEM(candidates, k, pair);
    }
    return Py_BuildValue("(NdON)", route_sums, page->newest, page->falls ? Py_True : Py_False,
                         candidates);
}

static void release(PageSums *page) {
    for (int r = 0; r < N_ROUTES; r++) Py_CLEAR(page->sums[r].misses);
}

/* A retry date as msgspec decodes it (a UTC datetime), or null, or UNSET. */
static int retry_state(PageSums *page, PyObject *value, int *state, long long *us) {
    if (value == page->unset)
        *state = STATE_UNKNOWN;
    else if (value == Py_None)
        *state = STATE_NONE;
    else {
        *state = STATE_DATE;
        return utc_microseconds(value, us);
    }
    return 1;
}

static PyObject *summarize(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *messages, *message_type;
    PageSums page;
    if (!read_context(args, &messages, &message_type, &page)) return NULL;
    if (!PyList_Check(messages) || !PyType_Check(message_type)) {
        PyErr_SetString(PyExc_TypeError, "summarize(list of messages, their struct type, ...)");
        return NULL;
    }
    Py_ssize_t offsets[N_FIELDS];
    for (int f = 0; f < N_FIELDS; f++) {
        PyObject *descr = PyObject_GetAttrString(message_type, FIELD_NAMES[f]);
        if (descr == NULL) return NULL;
        int usable = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                     ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX;
        if (usable) offsets[f] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!usable) {
            PyErr_Format(PyExc_TypeError, "%s is not a plain struct field", FIELD_NAMES[f]);
            return NULL;
        }
    }

    PyObject *result = NULL;
    Py_ssize_t n = PyList_GET_SIZE(messages);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *message = PyList_GET_ITEM(messages, i);
        if (Py_TYPE(message) != (PyTypeObject *)message_type) goto not_clean;
        PyObject *field[N_FIELDS];
        for (int f = 0; f < N_FIELDS; f++) {
            field[f] = *(PyObject **)((char *)message + offsets[f]);
            if (field[f] == NULL) goto not_clean;
        }
        if (!PyUnicode_CheckExact(field[ROUTING])) goto not_clean;
        Values v;
        v.route = route_index(&page, field[ROUTING]);
        if (v.route == -2) goto done;
        if (v.route < 0 || !plain_count(field[SIZE], page.max_count, &v.size) ||
            !plain_count(field[ATTEMPTS], page.max_count, &v.attempts) ||
            !parse_created(field[CREATED], &v.created) ||
            !retry_state(&page, field[LOCKED_UNTIL], &v.lock_state, &v.lock_us) ||
            !retry_state(&page, field[NEXT_ATTEMPT], &v.next_state, &v.next_us))
            goto not_clean;
        if (!count_status(&page, &page.sums[v.route], field[INFO])) goto done;
        count_values(&page, &v, i);
    }
    result = page_result(&page);
    goto done;
not_clean: /* a value the loop must look at */
    result = Py_None;
    Py_INCREF(result);
done:
    release(&page);
    return result;
}

/* ---- sum_frame: the same sums, read from the answer's bytes ----------------- */

#define MAX_ROUTE_SPELLINGS 16

typedef struct {
    const char *text;
    Py_ssize_t length;
    long index;
} Spelling;

/* The characters of a string value without escapes, p on its quote. */
static int plain_string(const char *p, const char *end, const char **text, Py_ssize_t *length) {
    if (p >= end || *p != '"') return 0;
    const char *start = p + 1;
    const char *quote = memchr(start, '"', (size_t)(end - start));
    if (quote == NULL || memchr(start, '\\', (size_t)(quote - start)) != NULL)
        return 0; /* escaped: the loop reads it */
    *text = start;
    *length = quote - start;
    return 1;
}

#define INFO_CACHE 16

typedef struct {
    const char *raw; /* between the quotes, as written */
    Py_ssize_t length;
    PyObject *text;
    long status; /* status_cache index, -1: a miss */
} InfoEntry;

/* The bytes between the quotes of a string value, p on its opening quote. */
static int string_extent(const char *p, const char *end, const char **raw, Py_ssize_t *length) {
    if (p >= end || *p != '"') return 0;
    const char *start = ++p;
    for (;;) {
        const char *quote = memchr(p, '"', (size_t)(end - p));
        if (quote == NULL) return 0;
        /* Escaped if an odd number of backslashes stands before it. */
        const char *q = quote;
        while (q > start && q[-1] == '\\') q--;
        if ((quote - q) % 2 == 0) {
            *raw = start;
            *length = quote - start;
            return 1;
        }
        p = quote + 1;
    }
}

/* The str of a string value, p on its quote, escapes and all (frame() checked
 * it is JSON, with no surrogate escape); *raw, *raw_length: its bytes between
 * the quotes, as written. NULL: not a string (no error set), or an error. */
static PyObject *json_string(const char *p, const char *end, const char **raw,
                             Py_ssize_t *raw_length) {
    if (!string_extent(p, end, raw, raw_length)) return NULL;
    const char *start = *raw;
    p = start + *raw_length;
    if (memchr(start, '\\', (size_t)*raw_length) == NULL)
        return PyUnicode_DecodeUTF8(start, *raw_length, "strict");
    char *text = PyMem_Malloc((size_t)(p - start));
    if (text == NULL) return PyErr_NoMemory();
    char *out = text;
    for (const char *q = start; q < p; q++) {
        if (*q != '\\') {
            *out++ = *q;
            continue;
        }
        switch (*++q) {
        case 'b': *out++ = '\b'; break;
        case 'f': *out++ = '\f'; break;
        case 'n': *out++ = '\n'; break;
        case 'r': *out++ = '\r'; break;
        case 't': *out++ = '\t'; break;
        case 'u': {
            unsigned code = 0;
            for (int i = 1; i <= 4; i++) {
                char c = q[i];
                code = code * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
            }
            q += 4;
            if (code < 0x80) {
                *out++ = (char)code;
            } else if (code < 0x800) {
                *out++ = (char)(0xC0 | code >> 6);
                *out++ = (char)(0x80 | (code & 0x3F));
            } else { /* no surrogates: frame() leaves those to msgspec */
                *out++ = (char)(0xE0 | code >> 12);
                *out++ = (char)(0x80 | ((code >> 6) & 0x3F));
                *out++ = (char)(0x80 | (code & 0x3F));
            }
            break;
        }
        default: *out++ = *q; /* '"', '\\', '/' */
        }
    }
    PyObject *result = PyUnicode_DecodeUTF8(text, out - text, "strict");
    PyMem_Free(text);
    return result;
}

/* A count written as digits alone, from 0 to max (frame() checked the JSON). */
static int plain_digits(const char *p, const char *end, long long max, long long *out) {
    long long value = 0;
    const char *start = p;
    while (p < end && *p >= '0' && *p <= '9') {
        if (p - start >= 18) return 0; /* far beyond any max: the loop's */
        value = value * 10 + (*p++ - '0');
    }
    if (p == start || (p < end && (*p == '.' || *p == 'e' || *p == 'E'))) return 0; /* a float */
    if (value > max) return 0;
    *out = value;
    return 1;
}

/* "YYYY-MM-DDTHH:MM:SS", an optional fraction of 1 to 6 digits, then "Z",
 * "+00:00" or "+0000": UTC dates as msgspec decodes them into the datetimes
 * summarize() takes. Any other spelling is msgspec's to judge. */
static int parse_utc_microseconds(const char *p, Py_ssize_t length, long long *out) {
    double seconds;
    if (length < 20 || p[10] != 'T' || !parse_created_chars(p, 19, &seconds)) return 0;
    const char *tail = p + 19, *end = p + length;
    long long micro = 0;
    if (*tail == '.') {
        const char *digits_start = ++tail;
        while (tail < end && *tail >= '0' && *tail <= '9') tail++;
        Py_ssize_t n = tail - digits_start;
        if (n < 1 || n > 6) return 0;
        for (Py_ssize_t i = 0; i < 6; i++) micro = micro * 10 + (i < n ? digits_start[i] - '0' : 0);
    }
    Py_ssize_t rest = end - tail;
    if (!((rest == 1 && tail[0] == 'Z') || (rest == 6 && memcmp(tail, "+00:00", 6) == 0) ||
          (rest == 5 && memcmp(tail, "+0000", 5) == 0)))
        return 0;
    *out = (long long)seconds * 1000000LL + micro;
    return 1;
}

/* A retry date field at `at` (0: absent). */
static int frame_retry_state(const char *body, const char *end, uint32_t at, int *state,
                             long long *us) {
    if (at == 0) {
        *state = STATE_UNKNOWN;
        return 1;
    }
    const char *p = body + at;
    if (*p == 'n') {
        *state = STATE_NONE;
        return 1;
    }
    const char *text;
    Py_ssize_t length;
    *state = STATE_DATE;
    return plain_string(p, end, &text, &length) && parse_utc_microseconds(text, length, us);
}

static PyObject *sum_frame(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *body_object, *table;
    PageSums page;
    if (!read_context(args, &body_object, &table, &page)) return NULL;
    if (!PyBytes_Check(table) || PyBytes_GET_SIZE(table) % (FRAME_COLUMNS * sizeof(uint32_t))) {
        PyErr_SetString(PyExc_TypeError, "sum_frame(body, the table frame() made, ...)");
        return NULL;
    }
    Spelling spellings[MAX_ROUTE_SPELLINGS];
    int n_spellings = 0;
    PyObject *key, *value;
    Py_ssize_t position = 0;
    while (PyDict_Next(page.routes, &position, &key, &value)) {
        if (n_spellings == MAX_ROUTE_SPELLINGS || !PyUnicode_Check(key)) {
            PyErr_SetString(PyExc_ValueError, "routes: at most 16 spellings, as str");
            return NULL;
        }
        Spelling *spelling = &spellings[n_spellings++];
        spelling->text = PyUnicode_AsUTF8AndSize(key, &spelling->length);
        spelling->index = route_index(&page, key);
        if (spelling->text == NULL || spelling->index < 0) return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(body_object, &view, PyBUF_SIMPLE) < 0) return NULL;
    const char *body = view.buf, *end = body + view.len;
    const uint32_t *rows = (const uint32_t *)PyBytes_AS_STRING(table);
    Py_ssize_t n = PyBytes_GET_SIZE(table) / (FRAME_COLUMNS * (Py_ssize_t)sizeof(uint32_t));
    PyObject *result = NULL;
    /* Info texts repeat: each one's str and status are made once per page. */
    InfoEntry infos[INFO_CACHE] = {{NULL, 0, NULL, 0}};
    int n_infos = 0, next_slot = 0;
    long none_status = status_of(&page, Py_None);
    if (none_status == -2) goto done;

    for (Py_ssize_t i = 0; i < n; i++) {
        const uint32_t *row = rows + i * FRAME_COLUMNS;
        for (int c = 0; c < FRAME_COLUMNS; c++)
            if (row[c] >= (uint32_t)view.len) {
                PyErr_SetString(PyExc_ValueError, "the table does not fit the body");
                goto done;
            }
        const char *text;
        Py_ssize_t length;
        Values v;
        if (!row[FRAME_ROUTING] || !plain_string(body + row[FRAME_ROUTING], end, &text, &length))
            goto not_clean;
        v.route = -1;
        for (int k = 0; k < n_spellings; k++)
            if (spellings[k].length == length && memcmp(spellings[k].text, text, (size_t)length) == 0) {
                v.route = spellings[k].index;
                break;
            }
        if (v.route < 0 || !row[FRAME_SIZE] || !row[FRAME_ATTEMPTS] || !row[FRAME_CREATED] ||
            !plain_digits(body + row[FRAME_SIZE], end, page.max_count, &v.size) ||
            !plain_digits(body + row[FRAME_ATTEMPTS], end, page.max_count, &v.attempts) ||
            !plain_string(body + row[FRAME_CREATED], end, &text, &length) ||
            !parse_created_chars(text, length, &v.created) ||
            !frame_retry_state(body, end, row[FRAME_LOCKED_UNTIL], &v.lock_state, &v.lock_us) ||
            !frame_retry_state(body, end, row[FRAME_NEXT_ATTEMPT], &v.next_state, &v.next_us))
            goto not_clean;

        /* info: absent or null is None; a string is looked up; else the loop's. */
        PyObject *info = Py_None;
        long status = none_status;
        if (row[FRAME_INFO] && body[row[FRAME_INFO]] != 'n') {
            if (!string_extent(body + row[FRAME_INFO], end, &text, &length)) goto not_clean;
            int k = 0;
            while (k < n_infos && (infos[k].length != length ||
                                   memcmp(infos[k].raw, text, (size_t)length) != 0))
                k++;
            if (k == n_infos) {
                PyObject *decoded = json_string(body + row[FRAME_INFO], end, &text, &length);
                if (decoded == NULL) goto done; /* frame() checked it: out of memory */
                long found = status_of(&page, decoded);
                if (found == -2) {
                    Py_DECREF(decoded);
                    goto done;
                }
                k = n_infos < INFO_CACHE ? n_infos++ : next_slot++ % INFO_CACHE;
                Py_XSETREF(infos[k].text, decoded);
                infos[k].raw = text;
                infos[k].length = length;
                infos[k].status = found;
            }
            info = infos[k].text;
            status = infos[k].status;
        }
        if (!count_status_index(&page.sums[v.route], status, info)) goto done;
        count_values(&page, &v, i);
    }
    result = page_result(&page);
    goto done;
not_clean:
    result = Py_None;
    Py_INCREF(result);
done:
    for (int k = 0; k < n_infos; k++) Py_DECREF(infos[k].text);
    PyBuffer_Release(&view);
    release(&page);
    return result;
}

static PyMethodDef methods[] = {
    {"summarize", summarize, METH_VARARGS,
     "summarize(messages, message_type, routes, status_cache, unset, now, now_us, overdue_us,\n"
     "          size_bounds, age_bounds, max_count, statuses, keep, newest, falls, cut,\n"
     "          age_sums)\n"
     "--\n\n"
     "One page's sums by route, or None when a message is not well formed.\n"
     "See mimecast_exporter/aggregate.py, QueueAggregator.add."},
    {"frame", pageframe_frame, METH_VARARGS,
     "frame(body)\n--\n\n"
     "(meta span, fail span, table of the messages' fields) of an answer, or None\n"
     "when msgspec must decode it. See mimecast_exporter/_pageframe.c."},
    {"sum_frame", sum_frame, METH_VARARGS,
     "sum_frame(body, table, routes, status_cache, unset, now, now_us, overdue_us,\n"
     "          size_bounds, age_bounds, max_count, statuses, keep, newest, falls, cut,\n"
     "          age_sums)\n"
     "--\n\n"
     "summarize() for the messages frame() found in body, or None when a value is\n"
     "not one it takes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "mimecast_exporter._pagesum",
    "One page of well-formed messages, summed in C (see mimecast_exporter/_pagesum.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pagesum(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    return PyModule_Create(&module);
}
