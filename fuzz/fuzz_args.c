/*-------------------------------------------------------------------------
 *
 * fuzz_args.c
 *	  libFuzzer target: what users give the extension.
 *
 * The first byte of the input says what the rest is:
 *
 *	0	a variable name, as xplenty_valid_variable_name sees a jsonb key
 *		(bytes and a length, no NUL);
 *	1	a value of xplenty.api_url, for xplenty_check_api_url_text;
 *	2	a value of xplenty.account_id, for xplenty_valid_account_id;
 *	3	a variables argument as JSON text: the frontend JSON parser finds
 *		the top-level keys and the types of their values, and the checks
 *		check_variables in src/job_request.c makes on a jsonb are made on
 *		them.
 *
 * Every answer is compared with what the function's comment promises.
 *
 * fuzz/fuzz_args.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "arg_checks.h"
#include "fuzz_check.h"

static bool
is_ident_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		(!first && c >= '0' && c <= '9');
}

/* The promise: a letter or underscore, then letters, digits, underscores. */
static void
check_variable_name(const char *name, int len)
{
	bool		ok = xplenty_valid_variable_name(name, len);
	bool		expect = len >= 1 && len <= MAX_VARIABLE_NAME_LENGTH;

	for (int i = 0; expect && i < len; i++)
		expect = is_ident_char(name[i], i == 0);
	CHECK(ok == expect);
}

/*
 * The promise: only http:// and https:// URLs, no spaces, control
 * characters, query or fragment; the value in force is one a request can
 * use, so it still names a host once its trailing slashes are dropped.
 */
static void
check_api_url(const uint8_t *data, size_t size)
{
	char	   *url = input_text(data, size);
	char	   *orig;
	const char *problem;

	orig = strdup(url);
	problem = xplenty_check_api_url_text(url);
	if (problem == NULL)
	{
		size_t		scheme = pg_strncasecmp(url, "https://", 8) == 0 ? 8 : 7;
		size_t		len = strlen(url);

		CHECK(len >= 7);
		CHECK(pg_strncasecmp(url, "http://", 7) == 0 ||
			  pg_strncasecmp(url, "https://", 8) == 0);
		CHECK(len > scheme && url[scheme] != '/');	/* a host */
		CHECK(url[len - 1] != '/');
		for (const char *p = url; *p; p++)
			CHECK((unsigned char) *p > ' ' && *p != '?' && *p != '#');
		CHECK(strncmp(url, orig, len) == 0);
		for (size_t i = len; orig[i]; i++)
			CHECK(orig[i] == '/');
	}
	else
		CHECK(strcmp(url, orig) == 0);
	free(orig);
	free(url);
}

static void
check_account_id(const uint8_t *data, size_t size)
{
	char	   *id = input_text(data, size);
	bool		expect = true;

	for (const char *p = id; *p; p++)
		expect = expect && (is_ident_char(*p, false) || *p == '-');
	CHECK(xplenty_valid_account_id(id) == expect);
	free(id);
}

/* The top-level keys and values of a variables object. */
typedef struct VarsState
{
	JsonLexContext *lex;
	int			depth;
	int			keys;
	int			bad_names;
	int			bad_values;
} VarsState;

static void
vars_container_start(void *arg)
{
	VarsState  *state = (VarsState *) arg;

	/* A member's value that is an array or object: not a string. */
	if (state->depth == 1)
		state->bad_values++;
	state->depth++;
}

static void
vars_container_end(void *arg)
{
	((VarsState *) arg)->depth--;
}

static void
vars_field_start(void *arg, char *fname, bool isnull)
{
	VarsState  *state = (VarsState *) arg;

	(void) isnull;
	if (state->depth == 1)
	{
		state->keys++;
		check_variable_name(fname, (int) strlen(fname));
		if (!xplenty_valid_variable_name(fname, (int) strlen(fname)))
			state->bad_names++;
	}
	pfree(fname);
}

static void
vars_scalar(void *arg, char *token, JsonTokenType type)
{
	VarsState  *state = (VarsState *) arg;

	/* A scalar at depth 1 is a member's value; only strings will do. */
	if (state->depth == 1 && type != JSON_TOKEN_STRING)
		state->bad_values++;
	if (token != NULL)
		pfree(token);
}

static void
check_variables_json(const uint8_t *data, size_t size)
{
	char	   *text = input_text(data, size);
	JsonSemAction sem = {0};
	VarsState	state = {0};
	JsonParseErrorType rc;

	/* A jsonb argument is valid text in the database encoding. */
	if (memchr(text, '\0', size) != NULL ||
		pg_encoding_verifymbstr(PG_UTF8, text, (int) size) != (int) size)
	{
		free(text);
		return;
	}
	sem.semstate = &state;
	sem.object_start = vars_container_start;
	sem.object_end = vars_container_end;
	sem.array_start = vars_container_start;
	sem.array_end = vars_container_end;
	sem.object_field_start = vars_field_start;
	sem.scalar = vars_scalar;
	state.lex = makeJsonLexContextCstringLen(text, size, PG_UTF8, true);
	rc = pg_parse_json(state.lex, &sem);
	(void) rc;
	if (state.lex->strval != NULL)
	{
		pfree(state.lex->strval->data);
		pfree(state.lex->strval);
	}
	pfree(state.lex);
	free(text);
}

/*
 * PostgreSQL 15's frontend JSON parser does not free a token or field name
 * it has copied for a callback when the token after it is an error ("44@"
 * leaks "44"); in the server that memory belongs to a memory context that
 * is reset.  Those leaks are PostgreSQL's and are not reported.  The
 * parser's inner functions are named too: in deeply nested input,
 * pg_parse_json is further down the stack than LeakSanitizer looks.
 */
const char *__lsan_default_suppressions(void);

const char *
__lsan_default_suppressions(void)
{
	return "leak:pg_parse_json\n"
		"leak:parse_scalar\n"
		"leak:parse_object_field\n"
		"leak:parse_object\n"
		"leak:parse_array_element\n"
		"leak:parse_array\n";
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 4)
	{
		case 0:
			{
				/* Exactly the key's bytes, so a read past them is seen. */
				char	   *name = malloc(size);

				memcpy(name, data + 1, size - 1);
				check_variable_name(name, (int) (size - 1));
				free(name);
			}
			break;
		case 1:
			check_api_url(data + 1, size - 1);
			break;
		case 2:
			check_account_id(data + 1, size - 1);
			break;
		case 3:
			/* The frontend parser has no stack check: keep it shallow. */
			if (size <= 32768)
				check_variables_json(data + 1, size - 1);
			break;
	}
	return 0;
}
