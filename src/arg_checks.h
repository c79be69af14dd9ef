/*-------------------------------------------------------------------------
 *
 * arg_checks.h
 *	  Checks on what users give: variable names, the API URL, account IDs.
 *
 * src/arg_checks.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_ARG_CHECKS_H
#define XPLENTY_ARG_CHECKS_H

/* Xplenty variable names are identifiers; longer ones are surely wrong. */
#define MAX_VARIABLE_NAME_LENGTH 255

extern bool xplenty_valid_variable_name(const char *name, int len);
extern const char *xplenty_check_api_url_text(char *url);
extern bool xplenty_valid_account_id(const char *id);

#endif							/* XPLENTY_ARG_CHECKS_H */
