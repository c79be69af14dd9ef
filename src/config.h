/*-------------------------------------------------------------------------
 *
 * config.h
 *	  Settings (GUCs) of the xplenty extension.
 *
 * src/config.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_CONFIG_H
#define XPLENTY_CONFIG_H

/* Where and as whom the API is called. */
extern char *xplenty_api_url;
extern char *xplenty_account_id;
extern char *xplenty_api_key;
extern char *xplenty_api_key_file;

/* How the HTTP client behaves. */
extern int	xplenty_connect_timeout_ms;
extern int	xplenty_request_timeout_ms;
extern int	xplenty_max_response_size_kb;
extern bool xplenty_tls_verify;
extern char *xplenty_ca_file;
extern char *xplenty_proxy;

/* How the background worker behaves. */
extern char *xplenty_database;
extern int	xplenty_max_in_flight;
extern int	xplenty_queue_retention_s;
extern int	xplenty_rate_limit_reserve;

extern void xplenty_define_settings(void);
extern char *xplenty_get_api_key(void);
extern const char *xplenty_get_account_id(void);

#endif							/* XPLENTY_CONFIG_H */
