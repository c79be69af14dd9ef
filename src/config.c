/*-------------------------------------------------------------------------
 *
 * config.c
 *	  Settings (GUCs) of the xplenty extension and the checks on them.
 *
 * Everything that decides where a request goes or which credentials it
 * carries is PGC_SUSET: a role that could point xplenty.api_url at a server
 * of its own would collect the API key there.  The key itself is also
 * GUC_SUPERUSER_ONLY, so that SHOW, current_setting() and pg_settings keep
 * it from ordinary roles.
 *
 * src/config.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include "utils/guc.h"

#include "arg_checks.h"
#include "config.h"
#include "poll.h"
#include "retry.h"

/* The longest API key we accept; real ones are 40 characters or so. */
#define MAX_API_KEY_LENGTH 1024

char	   *xplenty_api_url = NULL;
char	   *xplenty_account_id = NULL;
char	   *xplenty_api_key = NULL;
char	   *xplenty_api_key_file = NULL;
int			xplenty_connect_timeout_ms = 10000;
int			xplenty_request_timeout_ms = 60000;
int			xplenty_max_response_size_kb = 10240;
bool		xplenty_tls_verify = true;
char	   *xplenty_ca_file = NULL;
char	   *xplenty_proxy = NULL;
char	   *xplenty_database = NULL;
int			xplenty_max_in_flight = 16;
int			xplenty_queue_retention_s = 7 * 24 * 3600;
int			xplenty_rate_limit_reserve = 10;

static bool check_api_url(char **newval, void **extra, GucSource source);
static bool check_account_id(char **newval, void **extra, GucSource source);
static void check_api_key_text(const char *key, const char *origin);
static void define_worker_settings(void);

/*
 * xplenty_define_settings
 *		Register every xplenty.* setting and reserve the prefix.
 *
 * Called from _PG_init.  Reserving the prefix turns a misspelt setting such
 * as xplenty.apikey into a warning instead of a silently ignored placeholder.
 */
void
xplenty_define_settings(void)
{
	DefineCustomStringVariable("xplenty.api_url",
							   "Base URL of the Xplenty API.",
							   "Requests go to {api_url}/{account_id}/api/.",
							   &xplenty_api_url,
							   "https://api.xplenty.com",
							   PGC_SUSET, 0,
							   check_api_url, NULL, NULL);

	DefineCustomStringVariable("xplenty.account_id",
							   "Xplenty account ID that jobs are run under.",
							   NULL,
							   &xplenty_account_id,
							   "",
							   PGC_SUSET, 0,
							   check_account_id, NULL, NULL);

	DefineCustomStringVariable("xplenty.api_key",
							   "Xplenty API key, sent as the HTTP Basic user.",
							   "Only superusers can see or change it.",
							   &xplenty_api_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("xplenty.api_key_file",
							   "File holding the Xplenty API key.",
							   "When set, the key is read from this file and "
							   "xplenty.api_key is ignored.",
							   &xplenty_api_key_file,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.connect_timeout",
							"Longest wait for a connection to the API.",
							NULL,
							&xplenty_connect_timeout_ms,
							10000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.request_timeout",
							"Longest time a whole API request may take.",
							"Connecting, sending and reading the answer.",
							&xplenty_request_timeout_ms,
							60000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.max_response_size",
							"Largest API answer that is read into memory.",
							"A larger answer fails the request.",
							&xplenty_max_response_size_kb,
							10240, 1, 1024 * 1024,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("xplenty.tls_verify",
							 "Verify the API server's certificate and name.",
							 NULL,
							 &xplenty_tls_verify,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("xplenty.ca_file",
							   "File of CA certificates that the API server's "
							   "certificate is checked against.",
							   "Empty means the system's default CA bundle.",
							   &xplenty_ca_file,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("xplenty.proxy",
							   "HTTP proxy for API requests (a libcurl URL).",
							   "Empty: no proxy, whatever the environment.",
							   &xplenty_proxy,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	define_worker_settings();
	MarkGUCPrefixReserved("xplenty");
}

/*
 * define_worker_settings
 *		Register the settings of the background worker and its retries.
 */
static void
define_worker_settings(void)
{
	DefineCustomStringVariable("xplenty.database",
							   "Database whose queue the background worker "
							   "serves.",
							   NULL,
							   &xplenty_database,
							   "postgres",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.max_in_flight",
							"Most requests the worker has in flight at once.",
							NULL,
							&xplenty_max_in_flight,
							16, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.max_attempts",
							"Most times the worker sends a request, or "
							"checks on one, before it gives up.",
							NULL,
							&xplenty_max_attempts,
							10, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.retry_base_delay",
							"Delay before the first retry of a failed "
							"request; it doubles with each retry.",
							NULL,
							&xplenty_retry_base_delay_ms,
							1000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.retry_max_delay",
							"Longest delay between retries of a request.",
							NULL,
							&xplenty_retry_max_delay_ms,
							300000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.queue_retention",
							"How long submitted and failed requests stay "
							"in the queue.",
							"-1 keeps them until they are deleted by hand.",
							&xplenty_queue_retention_s,
							7 * 24 * 3600, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.poll_min_interval",
							"Shortest time between two polls of a job the "
							"worker follows.",
							"A job is polled every tenth of its age, between "
							"the two intervals.",
							&xplenty_poll_min_interval_ms,
							10000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.poll_max_interval",
							"Longest time between two polls of a job the "
							"worker follows.",
							NULL,
							&xplenty_poll_max_interval_ms,
							600000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.poll_budget",
							"Most API credits an hour the worker spends on "
							"following jobs.",
							"0 stops following jobs.",
							&xplenty_poll_budget,
							1000, 0, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("xplenty.rate_limit_reserve",
							"API credits the worker leaves unspent; it "
							"pauses when X-RateLimit-Remaining falls to it.",
							NULL,
							&xplenty_rate_limit_reserve,
							10, 0, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
}

/*
 * check_api_url
 *		GUC check hook of xplenty.api_url; see xplenty_check_api_url_text.
 */
static bool
check_api_url(char **newval, void **extra, GucSource source)
{
	const char *problem;

	(void) extra;
	(void) source;
	if (*newval == NULL)
		return true;

	problem = xplenty_check_api_url_text(*newval);
	if (problem != NULL)
	{
		GUC_check_errdetail("%s", problem);
		return false;
	}
	return true;
}

/*
 * check_account_id
 *		GUC check hook of xplenty.account_id; see xplenty_valid_account_id.
 */
static bool
check_account_id(char **newval, void **extra, GucSource source)
{
	(void) extra;
	(void) source;
	if (*newval == NULL)
		return true;

	if (!xplenty_valid_account_id(*newval))
	{
		GUC_check_errdetail("An account ID consists of letters, digits, "
							"\"-\" and \"_\".");
		return false;
	}
	return true;
}

/*
 * xplenty_get_account_id
 *		The account ID in force, or an error saying how to set it.
 */
const char *
xplenty_get_account_id(void)
{
	if (xplenty_account_id == NULL || xplenty_account_id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("xplenty.account_id is not set"),
				 errhint("Set xplenty.account_id to the Xplenty account's ID, "
						 "for example with ALTER SYSTEM, and reload the "
						 "configuration.")));
	return xplenty_account_id;
}

/*
 * read_api_key_file
 *		Read the key from xplenty.api_key_file into palloc'd memory.
 *
 * The file is read at each use rather than cached, so that a rotated key is
 * picked up without a reload; trailing white space (the newline an editor
 * leaves) is dropped.
 */
static char *
read_api_key_file(const char *path)
{
	char		buf[MAX_API_KEY_LENGTH + 2];
	int			fd;
	ssize_t		len;

	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open xplenty.api_key_file \"%s\": %m",
						path),
				 errhint("Make the file readable by the database server's "
						 "operating system user.")));
	len = read(fd, buf, sizeof(buf) - 1);
	if (len < 0)
	{
		int			save_errno = errno;

		close(fd);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read xplenty.api_key_file \"%s\": %m",
						path)));
	}
	close(fd);

	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
					   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';

	if (len > MAX_API_KEY_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("xplenty.api_key_file \"%s\" does not hold an API key",
						path),
				 errdetail("The file is longer than %d bytes.",
						   MAX_API_KEY_LENGTH)));
	check_api_key_text(buf, "xplenty.api_key_file");
	return pstrdup(buf);
}

/*
 * check_api_key_text
 *		Refuse a key that cannot be sent as an HTTP Basic user name.
 *
 * This is done at use rather than in a GUC check hook on purpose: a check
 * hook's failure message quotes the rejected value, which would write the
 * key to the server log.
 */
static void
check_api_key_text(const char *key, const char *origin)
{
	if (key[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is empty", origin),
				 errhint("Put the Xplenty API key in it.")));

	for (const char *p = key; *p; p++)
	{
		if ((unsigned char) *p < ' ' || *p == ':' || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s does not hold a valid API key", origin),
					 errdetail("An API key cannot contain a colon or control "
							   "characters.")));
	}
}

/*
 * xplenty_get_api_key
 *		The API key in force, palloc'd, or an error saying how to set it.
 *
 * The caller should pfree the result as soon as the request is built, so
 * that the key lives in memory no longer than needed.
 */
char *
xplenty_get_api_key(void)
{
	if (xplenty_api_key_file != NULL && xplenty_api_key_file[0] != '\0')
		return read_api_key_file(xplenty_api_key_file);

	if (xplenty_api_key == NULL || xplenty_api_key[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("xplenty.api_key is not set"),
				 errhint("Set xplenty.api_key_file to a file holding the "
						 "Xplenty API key, or xplenty.api_key to the key "
						 "itself, and reload the configuration.")));
	if (strlen(xplenty_api_key) > MAX_API_KEY_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("xplenty.api_key does not hold a valid API key"),
				 errdetail("It is longer than %d bytes.",
						   MAX_API_KEY_LENGTH)));
	check_api_key_text(xplenty_api_key, "xplenty.api_key");
	return pstrdup(xplenty_api_key);
}
