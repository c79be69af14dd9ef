/*-------------------------------------------------------------------------
 *
 * answer_jsonb.c
 *	  Build the jsonb of an ordinary answer in one pass (see quick_json.c).
 *
 * The values the quick reader hands on are put together into a JsonbValue
 * tree, the in-memory form of jsonb that JsonbValueToJsonb turns into the
 * on-disk one, exactly as jsonb_in's own parse actions would build it:
 * numbers through numeric_in, objects' keys sorted by length and then
 * bytes, and of two members with the same key, the later one kept.
 *
 * Nothing here raises an ERROR for anything in an answer the quick reader
 * accepts: its numbers are short and have no exponent, so numeric_in can
 * hold them, and the answers given to it are small enough that no jsonb
 * size limit comes near.
 *
 * src/answer_jsonb.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "answer_jsonb.h"
#include "answer_text.h"
#include "quick_json.h"

/*
 * Larger answers are left to jsonb_in.  A thousand times what a job takes,
 * and far below where a jsonb could grow past its 256 MB limit.
 */
#define QUICK_ANSWER_MAX (1024 * 1024)

/* Objects with no more members than this have them sorted by insertion. */
#define INSERTION_SORT_MAX 32

/*
 * Room first made for an object's members and an array's elements: a job
 * has some twenty members, and most arrays in an answer are short.
 */
#define FIRST_OBJECT_ROOM 32
#define FIRST_ARRAY_ROOM 8

/* Integers of up to this many digits go to numeric without numeric_in. */
#define INT64_DIGITS_MAX 18

/* An array or object being built, and for an object its pending key. */
typedef struct BuildFrame
{
	JsonbValue	value;			/* jbvArray or jbvObject */
	int			capacity;		/* of value's elems or pairs */
	JsonbValue	key;
} BuildFrame;

typedef struct JsonbBuild
{
	int			depth;
	BuildFrame	frames[XPLENTY_QUICK_JSON_MAX_DEPTH];
	JsonbValue	result;
} JsonbBuild;

/*
 * add_value
 *		Add a finished value to the container being built, or make it the
 *		result if there is none.
 */
static void
add_value(JsonbBuild *build, const JsonbValue *value)
{
	BuildFrame *frame;

	if (build->depth == 0)
	{
		build->result = *value;
		return;
	}
	frame = &build->frames[build->depth - 1];
	if (frame->value.type == jbvObject)
	{
		int			n = frame->value.val.object.nPairs;
		JsonbPair  *pair;

		if (n == frame->capacity)
		{
			frame->capacity *= 2;
			frame->value.val.object.pairs =
				repalloc(frame->value.val.object.pairs,
						 sizeof(JsonbPair) * frame->capacity);
		}
		pair = &frame->value.val.object.pairs[n];
		pair->key = frame->key;
		pair->value = *value;
		pair->order = n;
		frame->value.val.object.nPairs = n + 1;
	}
	else
	{
		int			n = frame->value.val.array.nElems;

		if (n == frame->capacity)
		{
			frame->capacity *= 2;
			frame->value.val.array.elems =
				repalloc(frame->value.val.array.elems,
						 sizeof(JsonbValue) * frame->capacity);
		}
		frame->value.val.array.elems[n] = *value;
		frame->value.val.array.nElems = n + 1;
	}
}

/*
 * compare_keys
 *		jsonb's order of object keys: shorter first, then by bytes.
 */
static inline int
compare_keys(const JsonbValue *a, const JsonbValue *b)
{
	if (a->val.string.len != b->val.string.len)
		return a->val.string.len > b->val.string.len ? 1 : -1;
	return memcmp(a->val.string.val, b->val.string.val, a->val.string.len);
}

/*
 * compare_pairs
 *		qsort_arg comparator: by key, then in the order given, so that the
 *		sort keeps members with the same key in their order.
 */
static int
compare_pairs(const void *a, const void *b, void *arg)
{
	const JsonbPair *pa = (const JsonbPair *) a;
	const JsonbPair *pb = (const JsonbPair *) b;
	int			res = compare_keys(&pa->key, &pb->key);

	(void) arg;
	if (res != 0)
		return res;
	return pa->order < pb->order ? -1 : 1;
}

/*
 * sort_members
 *		Put an object's members in jsonb's key order, and of members with
 *		the same key keep only the last given, as jsonb_in does.
 *
 * An API object has a few dozen members at most.  For those, their
 * positions are sorted by insertion, with the comparison inline, and the
 * members then copied once into place: fewer steps than qsort_arg's calls
 * through a pointer, and each member moved once rather than many times.
 * Either sort keeps members with the same key in the order given.
 */
static void
sort_members(JsonbValue *object)
{
	JsonbPair  *pairs = object->val.object.pairs;
	int			n = object->val.object.nPairs;
	int			kept = 0;

	if (n <= 1)
		return;
	if (n <= INSERTION_SORT_MAX)
	{
		uint8		order[INSERTION_SORT_MAX];
		JsonbPair	sorted[INSERTION_SORT_MAX];

		for (int i = 0; i < n; i++)
		{
			int			j = i;

			/* Stop at an equal key: the sort must stay stable. */
			while (j > 0 &&
				   compare_keys(&pairs[order[j - 1]].key, &pairs[i].key) > 0)
			{
				order[j] = order[j - 1];
				j--;
			}
			order[j] = (uint8) i;
		}
		for (int i = 0; i < n; i++)
			sorted[i] = pairs[order[i]];
		memcpy(pairs, sorted, sizeof(JsonbPair) * n);
	}
	else
		qsort_arg(pairs, n, sizeof(JsonbPair), compare_pairs, NULL);

	for (int i = 0; i < n; i++)
	{
		if (i + 1 < n && compare_keys(&pairs[i].key, &pairs[i + 1].key) == 0)
			continue;
		if (kept != i)
			pairs[kept] = pairs[i];
		kept++;
	}
	object->val.object.nPairs = kept;
}

/*
 * build_begin
 *		The quick reader's handler for the start of an object or array.
 */
static void
build_begin(void *arg, bool is_object)
{
	JsonbBuild *build = (JsonbBuild *) arg;
	BuildFrame *frame = &build->frames[build->depth++];

	if (is_object)
	{
		frame->capacity = FIRST_OBJECT_ROOM;
		frame->value.type = jbvObject;
		frame->value.val.object.nPairs = 0;
		frame->value.val.object.pairs =
			palloc(sizeof(JsonbPair) * frame->capacity);
	}
	else
	{
		frame->capacity = FIRST_ARRAY_ROOM;
		frame->value.type = jbvArray;
		frame->value.val.array.nElems = 0;
		frame->value.val.array.rawScalar = false;
		frame->value.val.array.elems =
			palloc(sizeof(JsonbValue) * frame->capacity);
	}
}

/*
 * build_end
 *		The quick reader's handler for the end of an object or array.
 */
static void
build_end(void *arg, bool is_object)
{
	JsonbBuild *build = (JsonbBuild *) arg;
	JsonbValue	done = build->frames[--build->depth].value;

	if (is_object)
		sort_members(&done);
	add_value(build, &done);
}

/*
 * build_key
 *		The quick reader's handler for an object member's key.
 */
static void
build_key(void *arg, const char *key, size_t len)
{
	JsonbBuild *build = (JsonbBuild *) arg;
	JsonbValue *pending = &build->frames[build->depth - 1].key;

	pending->type = jbvString;
	pending->val.string.val = (char *) key;
	pending->val.string.len = (int) len;
}

/*
 * number_to_numeric
 *		A number token as numeric, as numeric_in reads it.
 *
 * Most numbers in an answer are IDs and counts.  A whole number of a few
 * digits is made with int64_to_numeric, which gives the same numeric that
 * numeric_in would (both leave it in its normal form), without the seven
 * case-blind comparisons with "NaN", "Infinity" and the rest that
 * numeric_in makes before it reads a digit.
 */
static Numeric
number_to_numeric(const char *text, size_t len)
{
	char		token[XPLENTY_QUICK_JSON_MAX_NUMBER + 1];
	const char *p = text;
	const char *end = text + len;
	bool		negative = false;
	int64		value = 0;

	if (p < end && *p == '-')
	{
		negative = true;
		p++;
	}
	if (end - p <= INT64_DIGITS_MAX)
	{
		while (p < end && *p >= '0' && *p <= '9')
			value = value * 10 + (*p++ - '0');
		if (p == end)
			return int64_to_numeric(negative ? -value : value);
	}

	memcpy(token, text, len);
	token[len] = '\0';
	return DatumGetNumeric(DirectFunctionCall3(numeric_in,
											   CStringGetDatum(token),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
}

/*
 * build_scalar
 *		The quick reader's handler for a string, number, boolean or null.
 */
static void
build_scalar(void *arg, XplentyJsonScalar kind, const char *text,
			 size_t len)
{
	JsonbBuild *build = (JsonbBuild *) arg;
	JsonbValue	value;

	switch (kind)
	{
		case XPLENTY_JSON_STRING:
			value.type = jbvString;
			value.val.string.val = (char *) text;
			value.val.string.len = (int) len;
			break;
		case XPLENTY_JSON_NUMBER:
			value.type = jbvNumeric;
			value.val.numeric = number_to_numeric(text, len);
			break;
		case XPLENTY_JSON_TRUE:
		case XPLENTY_JSON_FALSE:
			value.type = jbvBool;
			value.val.boolean = (kind == XPLENTY_JSON_TRUE);
			break;
		case XPLENTY_JSON_NULL:
			value.type = jbvNull;
			break;
	}
	add_value(build, &value);
}

static const XplentyJsonHandlers build_handlers = {
	.begin = build_begin,
	.end = build_end,
	.key = build_key,
	.scalar = build_scalar,
};

/*
 * xplenty_quick_answer_jsonb
 *		The answer as jsonb, read in one pass; or NULL if it is not an
 *		ordinary answer that the quick reader takes (then jsonb_in reads
 *		it, or says what is wrong with it).
 *
 * Only for a UTF8 database: in another, the answer has to be converted,
 * and the conversion can fail.
 */
Jsonb *
xplenty_quick_answer_jsonb(const char *answer, size_t len)
{
	JsonbBuild *build;
	char	   *text;
	Jsonb	   *result = NULL;

	if (len == 0 || len > QUICK_ANSWER_MAX ||
		GetDatabaseEncoding() != PG_UTF8 ||
		xplenty_check_answer_text(answer, len) != XPLENTY_ANSWER_TEXT_OK)
		return NULL;

	/* The reader decodes in place: give it a copy to write on. */
	text = palloc(len + 1);
	memcpy(text, answer, len);
	text[len] = '\0';

	build = palloc(sizeof(JsonbBuild));
	build->depth = 0;
	if (xplenty_quick_json_read(text, len, &build_handlers, build))
		result = JsonbValueToJsonb(&build->result);

	pfree(build);
	pfree(text);
	return result;
}
