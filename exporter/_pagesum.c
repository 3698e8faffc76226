/* One page of well-formed messages, summed in C.
 *
 * exporter.aggregate.QueueAggregator.add_each runs Python bytecode for every
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
#include <datetime.h>
#include <structmember.h>
#include <string.h>

#define N_ROUTES 4
#define N_FIELDS 7
#define MAX_BOUNDS 32
#define MAX_STATUSES 64
#define MAX_KEEP 64

/* Field order of exporter.mimecast.pages.Message, as looked up by name. */
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
 * takes (exporter/dates.py, UTC_SECONDS), with the same checks. 0: not one. */
static int parse_created(PyObject *text, double *out) {
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_COMPACT_ASCII(text)) return 0;
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    const char *p = (const char *)PyUnicode_DATA(text);
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

static PyObject *summarize(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *messages, *message_type, *routes, *status_cache, *unset, *size_tuple, *age_tuple,
        *age_sums;
    double now, cut, newest;
    long long now_us, overdue_us, max_count;
    int n_statuses, keep, falls;
    if (!PyArg_ParseTuple(args, "O!O!O!O!OdLLOOLiidpdO!", &PyList_Type, &messages, &PyType_Type,
                          &message_type, &PyDict_Type, &routes, &PyDict_Type, &status_cache,
                          &unset, &now, &now_us, &overdue_us, &size_tuple, &age_tuple, &max_count,
                          &n_statuses, &keep, &newest, &falls, &cut, &PyTuple_Type, &age_sums))
        return NULL;
    if (PyTuple_GET_SIZE(age_sums) != N_ROUTES) {
        PyErr_SetString(PyExc_ValueError, "age_sums: one per route");
        return NULL;
    }
    if (n_statuses < 1 || n_statuses > MAX_STATUSES || keep < 1 || keep > MAX_KEEP) {
        PyErr_SetString(PyExc_ValueError, "statuses: 1 to 64; keep: 1 to 64");
        return NULL;
    }
    double size_bounds[MAX_BOUNDS], age_bounds[MAX_BOUNDS];
    int n_size, n_age;
    if (!read_bounds(size_tuple, size_bounds, &n_size) || !read_bounds(age_tuple, age_bounds, &n_age))
        return NULL;

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

    RouteSums sums[N_ROUTES];
    memset(sums, 0, sizeof sums);
    for (int r = 0; r < N_ROUTES; r++) {
        sums[r].oldest = Py_HUGE_VAL;
        /* Ages are added on to the route's running sum, one by one as the loop
         * adds them: the same float operations, so the same sum to the last bit. */
        sums[r].age_sum = PyFloat_AsDouble(PyTuple_GET_ITEM(age_sums, r));
        if (sums[r].age_sum == -1.0 && PyErr_Occurred()) return NULL;
    }
    Candidate kept[MAX_KEEP];
    int n_kept = 0;
    PyObject *result = NULL;
    int clean = 1;

    Py_ssize_t n = PyList_GET_SIZE(messages);
    for (Py_ssize_t i = 0; i < n && clean; i++) {
        PyObject *message = PyList_GET_ITEM(messages, i);
        if (Py_TYPE(message) != (PyTypeObject *)message_type) goto not_clean;
        PyObject *field[N_FIELDS];
        for (int f = 0; f < N_FIELDS; f++) {
            field[f] = *(PyObject **)((char *)message + offsets[f]);
            if (field[f] == NULL) goto not_clean;
        }
        if (!PyUnicode_CheckExact(field[ROUTING])) goto not_clean;
        PyObject *route_index = PyDict_GetItemWithError(routes, field[ROUTING]);
        if (route_index == NULL) {
            if (PyErr_Occurred()) goto error;
            goto not_clean;
        }
        long route = PyLong_AsLong(route_index);
        if (route < 0 || route >= N_ROUTES) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "route index out of range");
            goto error;
        }
        long long size, attempts;
        double created;
        if (!plain_count(field[SIZE], max_count, &size) ||
            !plain_count(field[ATTEMPTS], max_count, &attempts) ||
            !parse_created(field[CREATED], &created))
            goto not_clean;
        RouteSums *r = &sums[route];

        /* Retry state: null means none, UNSET unknown, a UTC date compared. */
        long long when;
        PyObject *until = field[LOCKED_UNTIL];
        if (until == unset)
            r->lock_unknown++;
        else if (until != Py_None) {
            if (!utc_microseconds(until, &when)) goto not_clean;
            if (when > now_us) r->locked++;
        }
        PyObject *next = field[NEXT_ATTEMPT];
        if (next == unset)
            r->retry_unknown++;
        else if (next != Py_None) {
            if (!utc_microseconds(next, &when)) goto not_clean;
            if (when < overdue_us) r->overdue++;
        }

        PyObject *info = field[INFO];
        PyObject *status = PyUnicode_CheckExact(info) ? PyDict_GetItemWithError(status_cache, info) : NULL;
        if (status == NULL && PyErr_Occurred()) goto error;
        long index = status == NULL ? -1 : PyLong_AsLong(status);
        if (index >= 0 && index < n_statuses) {
            r->statuses[index]++;
        } else {
            if (PyErr_Occurred()) goto error;
            if (r->misses == NULL && (r->misses = PyDict_New()) == NULL) goto error;
            if (increment(r->misses, info) == NULL) goto error;
        }

        r->messages++;
        r->size += size;
        r->size_counts[bucket(size_bounds, n_size, (double)size)]++;
        r->attempts += attempts;
        if (attempts > r->max_attempts) r->max_attempts = attempts;

        /* A message "from the future" (clock skew) is as young as can be. */
        double age = created < now ? now - created : 0.0;
        r->age_counts[bucket(age_bounds, n_age, age)]++;
        r->age_sum += age;
        if (created < r->oldest) r->oldest = created;
        if (created < cut) consider(kept, &n_kept, keep, created, i);
        if (created >= newest)
            newest = created;
        else
            falls = 1; /* not in ascending order */
        continue;
    not_clean:
        clean = 0;
    }
    if (!clean) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }

    PyObject *route_sums = PyTuple_New(N_ROUTES);
    if (route_sums == NULL) goto error;
    for (int r = 0; r < N_ROUTES; r++) {
        PyObject *item;
        if (sums[r].messages == 0) {
            item = Py_None;
            Py_INCREF(item);
        } else {
            if (sums[r].misses == NULL) {
                sums[r].misses = Py_None;
                Py_INCREF(Py_None);
            }
            item = route_tuple(&sums[r], n_size, n_age, n_statuses);
            if (item == NULL) {
                Py_DECREF(route_sums);
                goto error;
            }
        }
        PyTuple_SET_ITEM(route_sums, r, item);
    }
    PyObject *candidates = PyList_New(n_kept);
    if (candidates == NULL) {
        Py_DECREF(route_sums);
        goto error;
    }
    for (int k = 0; k < n_kept; k++) {
        PyObject *pair = Py_BuildValue("(dn)", kept[k].created, kept[k].index);
        if (pair == NULL) {
            Py_DECREF(route_sums);
            Py_DECREF(candidates);
            goto error;
        }
        PyList_SET_ITEM(candidates, k, pair);
    }
    result = Py_BuildValue("(NdON)", route_sums, newest, falls ? Py_True : Py_False, candidates);
    goto done;
error:
    result = NULL;
done:
    for (int r = 0; r < N_ROUTES; r++) Py_XDECREF(sums[r].misses);
    return result;
}

static PyMethodDef methods[] = {
    {"summarize", summarize, METH_VARARGS,
     "summarize(messages, message_type, routes, status_cache, unset, now, now_us, overdue_us,\n"
     "          size_bounds, age_bounds, max_count, statuses, keep, newest, falls, cut,\n"
     "          age_sums)\n"
     "--\n\n"
     "One page's sums by route, or None when a message is not well formed.\n"
     "See exporter/aggregate.py, QueueAggregator.add."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "exporter._pagesum",
    "One page of well-formed messages, summed in C (see exporter/_pagesum.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pagesum(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    return PyModule_Create(&module);
}
