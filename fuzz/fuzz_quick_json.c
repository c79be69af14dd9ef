/*-------------------------------------------------------------------------
 *
 * fuzz_quick_json.c
 *	  libFuzzer target: the quick reader of answers (src/quick_json.c),
 *	  against PostgreSQL's own JSON parser.
 *
 * The quick reader may turn down any answer (the caller then gives it to
 * jsonb_in), but what it accepts it must read exactly as PostgreSQL does.
 * So every input that passes xplenty_check_answer_text, as every answer
 * does before the quick reader sees it, is read twice: by the quick
 * reader, on a copy, recording what its handlers are told; and, if the
 * quick reader accepted it, by PostgreSQL's frontend parser (libpgcommon)
 * with escapes decoded, as jsonb_in's lexer reads it, recording what its
 * semantic actions are told.  The target aborts unless PostgreSQL accepts
 * the input too and both records are the same: the same objects and
 * arrays, the same keys and strings, byte for byte after decoding, the
 * same number tokens and keywords, in the same order.  It also checks the
 * reader's promises about numbers (short, no exponent) and nesting.
 *
 * What the values then become in jsonb (numeric_in, the order of keys,
 * the later of two equal keys kept) is the server's part; the regression
 * tests compare it with jsonb_in (sql/run_job.sql).
 *
 * fuzz/fuzz_quick_json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "answer_text.h"
#include "quick_json.h"
#include "fuzz_check.h"

/* One record of what a reader saw, and how deep it is nested. */
typedef struct Record
{
	StringInfoData events;
	int			depth;
	int			deepest;
} Record;

/*
 * record_event
 *		Append one event: a tag, then for strings, keys and numbers the
 *		length and the bytes.
 */
static void
record_event(Record *record, char tag, const char *text, size_t len)
{
	appendStringInfoChar(&record->events, tag);
	if (text != NULL)
	{
		appendStringInfo(&record->events, "%zu:", len);
		appendBinaryStringInfo(&record->events, text, (int) len);
	}
}

/* The quick reader's side. */

static void
quick_begin(void *arg, bool is_object)
{
	Record	   *record = (Record *) arg;

	record->depth++;
	record->deepest = Max(record->deepest, record->depth);
	record_event(record, is_object ? '{' : '[', NULL, 0);
}

static void
quick_end(void *arg, bool is_object)
{
	Record	   *record = (Record *) arg;

	record->depth--;
	record_event(record, is_object ? '}' : ']', NULL, 0);
}

static void
quick_key(void *arg, const char *key, size_t len)
{
	record_event((Record *) arg, 'K', key, len);
}

static void
quick_scalar(void *arg, XplentyJsonScalar kind, const char *text, size_t len)
{
	Record	   *record = (Record *) arg;

	switch (kind)
	{
		case XPLENTY_JSON_STRING:
			record_event(record, 'S', text, len);
			break;
		case XPLENTY_JSON_NUMBER:
			CHECK(len > 0 && len <= XPLENTY_QUICK_JSON_MAX_NUMBER);
			CHECK(memchr(text, 'e', len) == NULL);
			CHECK(memchr(text, 'E', len) == NULL);
			record_event(record, 'N', text, len);
			break;
		case XPLENTY_JSON_TRUE:
			record_event(record, 't', NULL, 0);
			break;
		case XPLENTY_JSON_FALSE:
			record_event(record, 'f', NULL, 0);
			break;
		case XPLENTY_JSON_NULL:
			record_event(record, 'n', NULL, 0);
			break;
	}
}

static const XplentyJsonHandlers quick_handlers = {
	.begin = quick_begin,
	.end = quick_end,
	.key = quick_key,
	.scalar = quick_scalar,
};

/* PostgreSQL's side, in the same terms. */

static void
pg_object_start(void *arg)
{
	record_event((Record *) arg, '{', NULL, 0);
}

static void
pg_object_end(void *arg)
{
	record_event((Record *) arg, '}', NULL, 0);
}

static void
pg_array_start(void *arg)
{
	record_event((Record *) arg, '[', NULL, 0);
}

static void
pg_array_end(void *arg)
{
	record_event((Record *) arg, ']', NULL, 0);
}

static void
pg_field_start(void *arg, char *fname, bool isnull)
{
	(void) isnull;
	record_event((Record *) arg, 'K', fname, strlen(fname));
	pfree(fname);
}

static void
pg_scalar(void *arg, char *token, JsonTokenType type)
{
	Record	   *record = (Record *) arg;

	switch (type)
	{
		case JSON_TOKEN_STRING:
			record_event(record, 'S', token, strlen(token));
			break;
		case JSON_TOKEN_NUMBER:
			record_event(record, 'N', token, strlen(token));
			break;
		case JSON_TOKEN_TRUE:
			record_event(record, 't', NULL, 0);
			break;
		case JSON_TOKEN_FALSE:
			record_event(record, 'f', NULL, 0);
			break;
		case JSON_TOKEN_NULL:
			record_event(record, 'n', NULL, 0);
			break;
		default:
			CHECK(!"a scalar of no known type");
	}
	pfree(token);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text;
	Record		quick;
	bool		accepted;

	if (xplenty_check_answer_text((const char *) data, size) !=
		XPLENTY_ANSWER_TEXT_OK)
		return 0;

	/* The quick reader decodes in place: it gets a copy. */
	text = input_text(data, size);
	initStringInfo(&quick.events);
	quick.depth = 0;
	quick.deepest = 0;
	accepted = xplenty_quick_json_read(text, size, &quick_handlers, &quick);
	free(text);

	if (accepted)
	{
		Record		full;
		JsonSemAction sem = {0};
		JsonLexContext *lex;
		JsonParseErrorType rc;

		CHECK(quick.depth == 0);
		CHECK(quick.deepest >= 1 &&
			  quick.deepest <= XPLENTY_QUICK_JSON_MAX_DEPTH);

		initStringInfo(&full.events);
		sem.semstate = &full;
		sem.object_start = pg_object_start;
		sem.object_end = pg_object_end;
		sem.array_start = pg_array_start;
		sem.array_end = pg_array_end;
		sem.object_field_start = pg_field_start;
		sem.scalar = pg_scalar;

		/* The same text again, untouched by the quick reader. */
		text = input_text(data, size);
		lex = makeJsonLexContextCstringLen(text, size, PG_UTF8, true);
		rc = pg_parse_json(lex, &sem);
		if (rc != JSON_SUCCESS)
		{
			fprintf(stderr, "fuzz_quick_json: the quick reader accepted "
					"what PostgreSQL's parser refuses (JsonParseErrorType "
					"%d)\n", (int) rc);
			abort();
		}
		if (full.events.len != quick.events.len ||
			memcmp(full.events.data, quick.events.data,
				   quick.events.len) != 0)
		{
			fprintf(stderr, "fuzz_quick_json: the readers differ\n"
					"quick:      %s\nPostgreSQL: %s\n",
					quick.events.data, full.events.data);
			abort();
		}
		pfree(lex->strval->data);
		pfree(lex->strval);
		pfree(lex);
		pfree(full.events.data);
		free(text);
	}
	pfree(quick.events.data);
	return 0;
}
