/*-------------------------------------------------------------------------
 *
 * standby.h
 *	  Warning about standbys that could lose the worker's claims.
 *
 * src/standby.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_STANDBY_H
#define XPLENTY_STANDBY_H

#include "utils/timestamp.h"

extern void xplenty_warn_async_standbys(TimestampTz now);

#endif							/* XPLENTY_STANDBY_H */
