/*-------------------------------------------------------------------------
 *
 * arg_checks.c
 *	  Checks on what users give: variable names, the API URL, account IDs.
 *
 * The functions that report a failed check (ereport, GUC_check_errdetail)
 * stay with their callers; what is decided here needs nothing but plain C,
 * so that the fuzz targets in fuzz/ build this file as it is, outside the
 * server.
 *
 * src/arg_checks.c
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include "arg_checks.h"

/*
 * xplenty_valid_variable_name
 *		Is the name an identifier, as Xplenty variable names are?
 */
bool
xplenty_valid_variable_name(const char *name, int len)
{
	if (len == 0 || len > MAX_VARIABLE_NAME_LENGTH)
		return false;
	if (!((name[0] >= 'a' && name[0] <= 'z') ||
		  (name[0] >= 'A' && name[0] <= 'Z') || name[0] == '_'))
		return false;
	for (int i = 1; i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

/*
 * xplenty_check_api_url_text
 *		Accept only http:// and https:// URLs, and drop a trailing slash:
 *		NULL if the URL is fine (its trailing slashes are then cut off in
 *		place), else what is wrong with it, as an error detail.
 *
 * libcurl would happily follow file:// or gopher://; refusing other schemes
 * here means the value in force is always one a request can use.
 */
const char *
xplenty_check_api_url_text(char *url)
{
	size_t		len;
	size_t		scheme;

	if (pg_strncasecmp(url, "http://", 7) == 0)
		scheme = 7;
	else if (pg_strncasecmp(url, "https://", 8) == 0)
		scheme = 8;
	else
		return "The URL must begin with \"https://\" or \"http://\".";

	/* "https://" alone would become "https:" below. */
	if (url[scheme] == '\0' || url[scheme] == '/')
		return "The URL must name a host after \"https://\" or \"http://\".";

	for (const char *p = url; *p; p++)
	{
		if ((unsigned char) *p <= ' ' || *p == '?' || *p == '#')
			return "The URL must not contain spaces, control characters, "
				"a query or a fragment.";
	}

	len = strlen(url);
	while (len > 0 && url[len - 1] == '/')
		url[--len] = '\0';

	return NULL;
}

/*
 * xplenty_valid_account_id
 *		Is the ID made only of the characters an Xplenty account ID is made
 *		of?
 *
 * The ID becomes a segment of the request path, so anything that could
 * leave that segment ("/", "?", "%", "..") is refused.
 */
bool
xplenty_valid_account_id(const char *id)
{
	for (const char *p = id; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return false;
	}
	return true;
}
