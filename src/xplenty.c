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

#include "miscadmin.h"

#include "config.h"
#include "wakeup.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * _PG_init
 *		Define the settings; from shared_preload_libraries, also ask for the
 *		shared memory and register the background worker.
 *
 * Loading the library from shared_preload_libraries is also what makes
 * xplenty.api_key safe: a setting that is read before its library defines
 * it is a placeholder that any role can SHOW.
 */
void
_PG_init(void)
{
	xplenty_define_settings();

	if (!process_shared_preload_libraries_in_progress)
		return;
	xplenty_wakeup_install_hooks();
	xplenty_register_worker();
}
