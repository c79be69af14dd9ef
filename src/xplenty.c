/*-------------------------------------------------------------------------
 *
 * xplenty.c
 *	  Entry point of the xplenty extension: launch Xplenty (Integrate.io)
 *	  jobs from PostgreSQL.
 *
 * src/xplenty.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "config.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * _PG_init
 *		Define the settings when the library is loaded.
 *
 * Loading the library from shared_preload_libraries is what makes
 * xplenty.api_key safe: a setting that is read before its library defines
 * it is a placeholder that any role can SHOW.
 */
void
_PG_init(void)
{
	xplenty_define_settings();
}
