/* exporter._moved: which names' counts moved between two polls of a dispatch state file, in C.
 *
 * The dispatch source compares each poll's flat counts ([launches0, gpu_ns0, launches1, ...]) with
 * the last poll's, position by position; for 100,000 names that is 200,000 comparisons a poll,
 * which Python's map(operator.ne, ...) makes one function call each. Same answer as
 * exporter/moved.py's moved_slots_python, which the package uses where it was built without a C
 * compiler (tests/unit/test_moved.py holds them together). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* moved_slots(counts, last) -> list of the slots (pair indexes, ascending, each once) whose pair in
 * counts differs from the one in last, then every slot counts has beyond last. */
static PyObject *moved_slots(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *counts, *last;
    if (!PyArg_ParseTuple(args, "O!O!:moved_slots", &PyList_Type, &counts, &PyList_Type, &last)) return NULL;
    PyObject *moved = PyList_New(0);
    if (!moved) return NULL;
    Py_ssize_t both = PyList_GET_SIZE(counts) < PyList_GET_SIZE(last) ? PyList_GET_SIZE(counts) : PyList_GET_SIZE(last);
    Py_ssize_t slots = PyList_GET_SIZE(counts) / 2, known = both / 2;
    for (Py_ssize_t slot = 0; slot < slots; slot++) {
        int differs = 1;
        if (slot < known) {
            differs = 0;
            for (Py_ssize_t at = 2 * slot; at < 2 * slot + 2 && !differs; at++) {
                /* identity first: the same small int, or a count decoded into the same object */
                PyObject *now = PyList_GET_ITEM(counts, at), *before = PyList_GET_ITEM(last, at);
                if (now == before) continue;
                differs = PyObject_RichCompareBool(now, before, Py_NE);
                if (differs < 0) goto fail;
            }
        }
        if (!differs) continue;
        PyObject *index = PyLong_FromSsize_t(slot);
        if (!index || PyList_Append(moved, index) < 0) {
            Py_XDECREF(index);
            goto fail;
        }
        Py_DECREF(index);
    }
    return moved;
fail:
    Py_DECREF(moved);
    return NULL;
}

static PyMethodDef methods[] = {
    {"moved_slots", moved_slots, METH_VARARGS,
     "moved_slots(counts, last): the slots whose [launches, gpu_ns] pair moved, then those new in counts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_moved", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__moved(void) { return PyModule_Create(&module); }
