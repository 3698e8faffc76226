/* Shared between mimecast_exporter/_pageframe.c (finding the messages of an answer) and
 * mimecast_exporter/_pagesum.c (summing them): the layout of a frame's table. */
#ifndef EXPORTER_PAGEFRAME_H
#define EXPORTER_PAGEFRAME_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* One row of uint32 per message: where its object starts and ends (one past
 * its "}"), then where the value of each field read starts, 0 when the
 * message does not have the field (0 is the answer's own first byte, never a
 * message's value). */
enum {
    FRAME_START,
    FRAME_END,
    FRAME_ROUTING,
    FRAME_SIZE,
    FRAME_ATTEMPTS,
    FRAME_CREATED,
    FRAME_INFO,
    FRAME_NEXT_ATTEMPT,
    FRAME_LOCKED_UNTIL,
    FRAME_COLUMNS
};

PyObject *pageframe_frame(PyObject *module, PyObject *args);

#endif
