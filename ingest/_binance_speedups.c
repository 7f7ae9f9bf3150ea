/*
 * Optional C accelerator for the one frame that is ~99 % of a Binance USDⓈ-M feed: a combined-stream
 * aggTrade of a known symbol whose id is the next one in sequence.
 *
 * Why it exists: in pure Python the floor of turning such a frame into a Trade (msgspec decode, two
 * Decimals, the event object) is about a microsecond, before any validation or sequencing; this module does
 * the scan, the checks and the event in one C call. It is deliberately narrow and stricter than the
 * Python paths: whatever it is not sure about (escapes, non-ASCII, nesting, floats, exponents, a number it
 * cannot prove in range, an unknown symbol, an out-of-order id, a contract multiplier) makes it return
 * None *before touching any state*, and the caller hands the untouched frame to the typed msgspec path and
 * then the general one. tests/unit/test_binance_speedups.py holds it to those paths on real and mutated
 * frames: same events, same state, same counters.
 *
 * It knows nothing of flushwatch: the Python side passes in the event type, Decimal and the adapter's dicts
 * through configure() and each call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct {
    const char *ptr;
    Py_ssize_t len;
} span_t;

/* set once by configure() */
static PyObject *trade_type = NULL;      /* flushwatch.events.Trade */
static PyObject *result_type = NULL;     /* ingest.base.ParseResult */
static PyObject *decimal_type = NULL;    /* decimal.Decimal */
static PyObject *decimal_one = NULL;     /* Decimal(1): the multiplier of an ordinary symbol */
static PyObject *trade_kwnames = NULL;   /* the Trade's own field-name objects, in the order of F_* */
static PyObject *result_kwnames = NULL;  /* ParseResult's "events" and "stream" */
static PyObject *str_sell, *str_buy, *str_trade, *str_instrument, *str_base, *str_multiplier;

enum { F_VENUE, F_SYMBOL, F_INSTRUMENT, F_BASE, F_TS, F_RECV_TS, F_SIDE, F_PRICE, F_QTY, F_NOTIONAL,
       F_TRADE_ID, N_FIELDS };

#define MAX_NUMBER_TEXT 30   /* digits and a point: keeps every accepted number inside [1e-29, 1e30) */
#define MAX_NOTIONAL_TEXT 28 /* two texts this short multiply exactly at Decimal's default precision */
#define MAX_TS 1000000000000000LL
#define MAX_ID 1000000000000000000LL /* 19 digits: what scan_uint reads, so last + 1 cannot overflow */
#define MAX_FRAME 4096       /* an aggTrade frame is ~200 bytes: anything longer is not ours */
#define MAX_SYMBOL 32

static inline const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A string of printable ASCII without escapes; p at the opening quote. */
static const char *scan_string(const char *p, const char *end, span_t *out)
{
    if (p >= end || *p != '"')
        return NULL;
    const char *start = ++p;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            out->ptr = start;
            out->len = p - start;
            return p + 1;
        }
        if (c == '\\' || c < 0x20 || c >= 0x80)
            return NULL;
        p++;
    }
    return NULL;
}

/* A JSON integer >= 0 of at most 18 digits (so it fits a long long), not followed by a fraction. */
static const char *scan_uint(const char *p, const char *end, long long *value, span_t *text)
{
    const char *start = p;
    long long v = 0;
    if (p >= end || !is_digit(*p))
        return NULL;
    if (*p == '0' && p + 1 < end && is_digit(p[1]))
        return NULL; /* leading zero: not JSON */
    while (p < end && is_digit(*p)) {
        v = v * 10 + (*p - '0');
        if (++p - start > 18)
            return NULL;
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
        return NULL;
    *value = v;
    text->ptr = start;
    text->len = p - start;
    return p;
}

/* Any JSON number, validated to the grammar and skipped. */
static const char *skip_number(const char *p, const char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end || !is_digit(*p))
        return NULL;
    if (*p == '0')
        p++;
    else
        while (p < end && is_digit(*p))
            p++;
    if (p < end && *p == '.') {
        if (++p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    return p;
}

static const char *scan_literal(const char *p, const char *end, const char *word, Py_ssize_t n)
{
    if (end - p < n || memcmp(p, word, (size_t)n) != 0)
        return NULL;
    return p + n;
}

/* A scalar we do not use (a string, number, true, false or null); containers are refused. */
static const char *skip_scalar(const char *p, const char *end)
{
    span_t ignored;
    if (p >= end)
        return NULL;
    switch (*p) {
    case '"':
        return scan_string(p, end, &ignored);
    case 't':
        return scan_literal(p, end, "true", 4);
    case 'f':
        return scan_literal(p, end, "false", 5);
    case 'n':
        return scan_literal(p, end, "null", 4);
    default:
        return skip_number(p, end);
    }
}

/* A positive decimal text: digits, optionally a point and digits, short enough to be in range. */
static int is_positive_number(span_t s)
{
    int nonzero = 0, point = 0;
    if (s.len < 1 || s.len > MAX_NUMBER_TEXT || !is_digit(s.ptr[0]) || !is_digit(s.ptr[s.len - 1]))
        return 0;
    for (Py_ssize_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '.') {
            if (point++)
                return 0;
        }
        else if (!is_digit(c))
            return 0;
        else if (c != '0')
            nonzero = 1;
    }
    return nonzero;
}

typedef struct {
    span_t e, s, p, q, a_text;
    long long a, T;
    int m;
    unsigned seen;
} agg_fields_t;

enum { SEEN_E = 1, SEEN_S = 2, SEEN_A = 4, SEEN_P = 8, SEEN_Q = 16, SEEN_T = 32, SEEN_M = 64 };
#define SEEN_ALL 127u

/* The aggTrade object; p at '{'. Known keys must appear once with the expected type. */
static const char *scan_agg_object(const char *p, const char *end, agg_fields_t *f)
{
    span_t key, ignored;
    if (p >= end || *p != '{')
        return NULL;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}')
        return NULL; /* empty: not ours */
    for (;;) {
        p = scan_string(p, end, &key);
        if (!p)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return NULL;
        p = skip_ws(p + 1, end);
        unsigned bit = 0;
        if (key.len == 1) {
            switch (key.ptr[0]) {
            case 'e': bit = SEEN_E; p = scan_string(p, end, &f->e); break;
            case 's': bit = SEEN_S; p = scan_string(p, end, &f->s); break;
            case 'p': bit = SEEN_P; p = scan_string(p, end, &f->p); break;
            case 'q': bit = SEEN_Q; p = scan_string(p, end, &f->q); break;
            case 'a': bit = SEEN_A; p = scan_uint(p, end, &f->a, &f->a_text); break;
            case 'T': bit = SEEN_T; p = scan_uint(p, end, &f->T, &ignored); break;
            case 'm':
                bit = SEEN_M;
                if (p < end && *p == 't') {
                    p = scan_literal(p, end, "true", 4);
                    f->m = 1;
                }
                else {
                    p = scan_literal(p, end, "false", 5);
                    f->m = 0;
                }
                break;
            default: p = skip_scalar(p, end);
            }
        }
        else
            p = skip_scalar(p, end);
        if (!p || (f->seen & bit))
            return NULL; /* bad value, or a known key twice */
        f->seen |= bit;
        p = skip_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == '}')
            return p + 1;
        if (*p != ',')
            return NULL;
        p = skip_ws(p + 1, end);
    }
}

/*
 * Binance's own layout, byte for byte apart from the values: the shape of nearly every frame, checked
 * with a few memcmp's instead of a key-by-key scan. 0 when the frame deviates anywhere; scan_envelope
 * then reads it. Everything it accepts, scan_envelope accepts too, with the same fields.
 */
#define EXPECT(literal)                                                                          \
    do {                                                                                         \
        if (!p || end - p < (Py_ssize_t)sizeof(literal) - 1 || memcmp(p, literal, sizeof(literal) - 1)) \
            return 0;                                                                            \
        p += sizeof(literal) - 1;                                                                \
    } while (0)

static int scan_binance_layout(const char *p, const char *end, agg_fields_t *f)
{
    static const char aggtrade[] = "aggTrade";
    span_t ignored;
    long long unused;
    EXPECT("{\"stream\":");
    p = scan_string(p, end, &ignored);
    EXPECT(",\"data\":{\"e\":\"aggTrade\",\"E\":");
    p = scan_uint(p, end, &unused, &ignored);
    EXPECT(",\"a\":");
    p = scan_uint(p, end, &f->a, &f->a_text);
    EXPECT(",\"s\":");
    p = scan_string(p, end, &f->s);
    EXPECT(",\"p\":");
    p = scan_string(p, end, &f->p);
    EXPECT(",\"q\":");
    p = scan_string(p, end, &f->q);
    EXPECT(",\"f\":");
    p = scan_uint(p, end, &unused, &ignored);
    EXPECT(",\"l\":");
    p = scan_uint(p, end, &unused, &ignored);
    EXPECT(",\"T\":");
    p = scan_uint(p, end, &f->T, &ignored);
    EXPECT(",\"m\":");
    if (p < end && *p == 't') {
        EXPECT("true");
        f->m = 1;
    }
    else {
        EXPECT("false");
        f->m = 0;
    }
    EXPECT("}}");
    if (p != end)
        return 0;
    f->e.ptr = aggtrade;
    f->e.len = sizeof(aggtrade) - 1;
    f->seen = SEEN_ALL;
    return 1;
}
#undef EXPECT

/* {"stream": "...", "data": {...}} with any other top-level scalars ignored. */
static int scan_envelope(const char *p, const char *end, agg_fields_t *f)
{
    span_t key;
    int have_data = 0;
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return 0;
    p = skip_ws(p + 1, end);
    for (;;) {
        p = scan_string(p, end, &key);
        if (!p)
            return 0;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return 0;
        p = skip_ws(p + 1, end);
        if (key.len == 4 && memcmp(key.ptr, "data", 4) == 0) {
            if (have_data++)
                return 0;
            p = scan_agg_object(p, end, f);
        }
        else
            p = skip_scalar(p, end);
        if (!p)
            return 0;
        p = skip_ws(p, end);
        if (p >= end)
            return 0;
        if (*p == '}')
            break;
        if (*p != ',')
            return 0;
        p = skip_ws(p + 1, end);
    }
    p = skip_ws(p + 1, end);
    return have_data && p == end;
}

static PyObject *text(span_t s) { return PyUnicode_DecodeASCII(s.ptr, s.len, NULL); }

static uint32_t fnv1a(span_t s)
{
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < s.len; i++)
        h = (h ^ (unsigned char)s.ptr[i]) * 16777619u;
    return h;
}

/*
 * Decimal(text) costs more than scanning the whole frame, and a feed repeats its numbers: the same price
 * level trade after trade, the same round sizes. A small direct-mapped cache of immutable Decimals keyed
 * by their exact text (so the same text always yields an equal value; construction from text is exact,
 * whatever the context) bounds the memory at DEC_CACHE_SLOTS values.
 */
#define DEC_CACHE_SLOTS 4096
typedef struct {
    Py_ssize_t len;
    char text[MAX_NUMBER_TEXT];
    PyObject *value;
} dec_slot_t;
static dec_slot_t dec_cache[DEC_CACHE_SLOTS];

static PyObject *decimal_from(span_t s)
{
    dec_slot_t *slot = &dec_cache[fnv1a(s) & (DEC_CACHE_SLOTS - 1)];
    if (slot->value != NULL && slot->len == s.len && memcmp(slot->text, s.ptr, (size_t)s.len) == 0) {
        Py_INCREF(slot->value);
        return slot->value;
    }
    PyObject *t = text(s);
    if (t == NULL)
        return NULL;
    PyObject *value = PyObject_CallOneArg(decimal_type, t);
    Py_DECREF(t);
    if (value == NULL)
        return NULL;
    Py_INCREF(value);
    Py_XSETREF(slot->value, value);
    slot->len = s.len;
    memcpy(slot->text, s.ptr, (size_t)s.len);
    return value;
}

/*
 * The symbols seen lately, so that a frame's symbol costs neither a new str (with its hash) nor three
 * attribute reads: direct-mapped by the symbol's text, each slot remembering which SymbolInfo its fields
 * came from. The adapter's dict stays the authority: every call looks the symbol up there and a slot whose
 * SymbolInfo is not the current one is refilled.
 */
#define SYMBOL_SLOTS 256
typedef struct {
    Py_ssize_t len;
    char text[MAX_SYMBOL];
    PyObject *symbol;     /* the str */
    PyObject *info;       /* the SymbolInfo the fields below were read from */
    PyObject *instrument;
    PyObject *base;
    int plain;            /* multiplier == 1 */
} symbol_slot_t;
static symbol_slot_t symbol_cache[SYMBOL_SLOTS];

/* The slot for this symbol with fields of its current SymbolInfo; NULL with no error when the symbol is
   unknown (or not resolved yet: the Python path resolves it), NULL with an error on failure. */
static symbol_slot_t *symbol_slot(span_t s, PyObject *symbols)
{
    symbol_slot_t *slot;
    PyObject *info, *mult;
    int plain;
    if (s.len < 1 || s.len > MAX_SYMBOL)
        return NULL;
    slot = &symbol_cache[fnv1a(s) & (SYMBOL_SLOTS - 1)];
    if (slot->symbol == NULL || slot->len != s.len || memcmp(slot->text, s.ptr, (size_t)s.len) != 0) {
        PyObject *symbol = text(s);
        if (symbol == NULL)
            return NULL;
        Py_XSETREF(slot->symbol, symbol);
        Py_CLEAR(slot->info);
        slot->len = s.len;
        memcpy(slot->text, s.ptr, (size_t)s.len);
    }
    info = PyDict_GetItemWithError(symbols, slot->symbol); /* borrowed */
    if (info == NULL || info == Py_None)
        return NULL;
    if (info == slot->info)
        return slot;
    mult = PyObject_GetAttr(info, str_multiplier);
    if (mult == NULL)
        return NULL;
    plain = PyObject_RichCompareBool(mult, decimal_one, Py_EQ);
    Py_DECREF(mult);
    if (plain < 0)
        return NULL;
    Py_CLEAR(slot->info);
    Py_XSETREF(slot->instrument, PyObject_GetAttr(info, str_instrument));
    Py_XSETREF(slot->base, PyObject_GetAttr(info, str_base));
    if (slot->instrument == NULL || slot->base == NULL)
        return NULL;
    Py_INCREF(info);
    slot->info = info;
    slot->plain = plain;
    return slot;
}

/*
 * agg_trade(raw, recv_ts, venue, symbols, last_ids) -> ParseResult | None
 *
 * symbols maps a venue symbol to its SymbolInfo (or None when unknown); last_ids maps it to the last
 * aggTrade id taken. On success last_ids[symbol] is the new id; on None nothing was changed.
 */
static PyObject *agg_trade(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    const char *buf;
    Py_ssize_t size;
    agg_fields_t f;
    symbol_slot_t *slot;
    PyObject *fields[N_FIELDS] = {NULL};
    PyObject *agg = NULL, *event = NULL, *events = NULL, *result = NULL, *last;
    long long last_id;

    if (nargs != 5 || !PyDict_CheckExact(args[3]) || !PyDict_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "agg_trade(raw, recv_ts, venue, symbols: dict, last_ids: dict)");
        return NULL;
    }
    if (trade_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() was not called");
        return NULL;
    }
    if (PyBytes_CheckExact(args[0])) {
        buf = PyBytes_AS_STRING(args[0]);
        size = PyBytes_GET_SIZE(args[0]);
    }
    else if (PyUnicode_CheckExact(args[0]) && PyUnicode_IS_ASCII(args[0])) {
        buf = (const char *)PyUnicode_DATA(args[0]);
        size = PyUnicode_GET_LENGTH(args[0]);
    }
    else
        Py_RETURN_NONE;
    if (size > MAX_FRAME)
        Py_RETURN_NONE;

    memset(&f, 0, sizeof f);
    if (!scan_binance_layout(buf, buf + size, &f)) {
        memset(&f, 0, sizeof f);
        if (!scan_envelope(buf, buf + size, &f) || f.seen != SEEN_ALL)
            Py_RETURN_NONE;
    }
    if (f.e.len != 8 || memcmp(f.e.ptr, "aggTrade", 8) != 0)
        Py_RETURN_NONE;
    if (f.T <= 0 || f.T >= MAX_TS || !is_positive_number(f.p) || !is_positive_number(f.q)
        || f.p.len + f.q.len > MAX_NOTIONAL_TEXT)
        Py_RETURN_NONE;

    slot = symbol_slot(f.s, args[3]);
    if (slot == NULL || !slot->plain)
        goto refuse; /* unknown or unresolved symbol, or a contract multiplier: the Python path */
    last = PyDict_GetItemWithError(args[4], slot->symbol); /* borrowed */
    if (last == NULL || !PyLong_CheckExact(last))
        goto refuse;
    last_id = PyLong_AsLongLong(last);
    if (last_id == -1 && PyErr_Occurred())
        goto refuse;
    if (last_id < 0 || last_id >= MAX_ID || f.a != last_id + 1)
        goto refuse; /* a duplicate or a gap (or an id out of our range): the Python path counts it */

    Py_INCREF(args[2]);
    fields[F_VENUE] = args[2];
    Py_INCREF(slot->symbol);
    fields[F_SYMBOL] = slot->symbol;
    Py_INCREF(slot->instrument);
    fields[F_INSTRUMENT] = slot->instrument;
    Py_INCREF(slot->base);
    fields[F_BASE] = slot->base;
    Py_INCREF(args[1]);
    fields[F_RECV_TS] = args[1];
    fields[F_SIDE] = f.m ? str_sell : str_buy;
    Py_INCREF(fields[F_SIDE]);
    if (!(fields[F_TS] = PyLong_FromLongLong(f.T)) || !(fields[F_PRICE] = decimal_from(f.p))
        || !(fields[F_QTY] = decimal_from(f.q))
        || !(fields[F_NOTIONAL] = PyNumber_Multiply(fields[F_PRICE], fields[F_QTY]))
        || !(fields[F_TRADE_ID] = text(f.a_text)) || !(agg = PyLong_FromLongLong(f.a)))
        goto refuse;
    if (!(event = PyObject_Vectorcall(trade_type, fields, 0, trade_kwnames)) || !(events = PyList_New(1)))
        goto refuse;
    PyList_SET_ITEM(events, 0, event);
    event = NULL; /* the list holds it */
    {
        PyObject *result_args[2] = {events, str_trade};
        result = PyObject_Vectorcall(result_type, result_args, 0, result_kwnames);
    }
    if (result == NULL)
        goto refuse;
    /* the only state change, and the last step: a failure before it leaves the adapter untouched */
    if (PyDict_SetItem(args[4], slot->symbol, agg) < 0)
        Py_CLEAR(result);

refuse:
    if (result == NULL) {
        /* nothing was changed: the Python paths meet the same input and judge it (and any error again) */
        PyErr_Clear();
        result = Py_None;
        Py_INCREF(result);
    }
    for (int i = 0; i < N_FIELDS; i++)
        Py_XDECREF(fields[i]);
    Py_XDECREF(agg);
    Py_XDECREF(event);
    Py_XDECREF(events);
    return result;
}

/* The struct's own field-name objects for `names`, in that order (see configure). */
static PyObject *own_field_names(PyObject *type, const char *const *names, int count)
{
    PyObject *own = PyObject_GetAttrString(type, "__struct_fields__");
    PyObject *out = NULL;
    if (own == NULL)
        return NULL;
    if (!PyTuple_Check(own)) {
        PyErr_SetString(PyExc_TypeError, "not a msgspec.Struct type: no __struct_fields__ tuple");
        goto done;
    }
    if (!(out = PyTuple_New(count)))
        goto done;
    for (int i = 0; i < count; i++) {
        PyObject *found = NULL;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(own) && found == NULL; j++) {
            PyObject *name = PyTuple_GET_ITEM(own, j);
            if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, names[i]) == 0)
                found = name;
        }
        if (found == NULL) {
            PyErr_Format(PyExc_TypeError, "%R has no field %s", type, names[i]);
            Py_CLEAR(out);
            goto done;
        }
        Py_INCREF(found);
        PyTuple_SET_ITEM(out, i, found);
    }
done:
    Py_DECREF(own);
    return out;
}

/*
 * configure(Trade, ParseResult, Decimal)
 *
 * The keyword names passed to the two constructors are the structs' own field-name objects: msgspec
 * matches keywords by identity first and by comparing text otherwise, which alone cost a third of the
 * call.
 */
static PyObject *configure(PyObject *Py_UNUSED(module), PyObject *args)
{
    static const char *const trade_names[N_FIELDS] = {
        "venue", "symbol", "instrument", "base", "ts", "recv_ts", "side", "price", "qty", "notional_usd",
        "trade_id"};
    static const char *const result_names[2] = {"events", "stream"};
    PyObject *trade, *result, *decimal, *one, *tk, *rk;
    if (!PyArg_ParseTuple(args, "OOO:configure", &trade, &result, &decimal))
        return NULL;
    if (!(tk = own_field_names(trade, trade_names, N_FIELDS)))
        return NULL;
    if (!(rk = own_field_names(result, result_names, 2))) {
        Py_DECREF(tk);
        return NULL;
    }
    if (!(one = PyObject_CallFunction(decimal, "i", 1))) {
        Py_DECREF(tk);
        Py_DECREF(rk);
        return NULL;
    }
    Py_INCREF(trade);
    Py_XSETREF(trade_type, trade);
    Py_INCREF(result);
    Py_XSETREF(result_type, result);
    Py_INCREF(decimal);
    Py_XSETREF(decimal_type, decimal);
    Py_XSETREF(decimal_one, one);
    Py_XSETREF(trade_kwnames, tk);
    Py_XSETREF(result_kwnames, rk);
    /* values made by another Decimal type or for other symbols' fields must not survive a reconfigure */
    for (int i = 0; i < DEC_CACHE_SLOTS; i++)
        Py_CLEAR(dec_cache[i].value);
    for (int i = 0; i < SYMBOL_SLOTS; i++) {
        Py_CLEAR(symbol_cache[i].symbol);
        Py_CLEAR(symbol_cache[i].info);
        Py_CLEAR(symbol_cache[i].instrument);
        Py_CLEAR(symbol_cache[i].base);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"agg_trade", (PyCFunction)(void (*)(void))agg_trade, METH_FASTCALL,
     "agg_trade(raw, recv_ts, venue, symbols, last_ids) -> ParseResult | None"},
    {"configure", configure, METH_VARARGS, "configure(Trade, ParseResult, Decimal)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_binance_speedups", "C fast path for Binance aggTrade frames.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__binance_speedups(void)
{
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    str_sell = PyUnicode_InternFromString("sell");
    str_buy = PyUnicode_InternFromString("buy");
    str_trade = PyUnicode_InternFromString("trade");
    str_instrument = PyUnicode_InternFromString("instrument");
    str_base = PyUnicode_InternFromString("base");
    str_multiplier = PyUnicode_InternFromString("multiplier");
    if (!str_sell || !str_buy || !str_trade || !str_instrument || !str_base || !str_multiplier) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
