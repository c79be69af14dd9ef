/*
 * asan_preload.c - preloaded after libasan into servers run by SANITIZE=1
 * test/run.sh (see checked_build_and_install in test/lib.sh).
 *
 * A preloaded libasan is initialised by the first malloc() of the process,
 * which comes from some library's constructor, since the preloaded
 * library's own constructor runs after theirs.  If that malloc() is made
 * with a lock of the C library's locale or gettext code held for writing,
 * as in libp11-kit's call of newlocale() and libgpg-error's of
 * bindtextdomain(), ASan's initialisation (which calls dlerror(), and so
 * dcgettext()) takes the same lock again, and releases it on the way out:
 * the process hangs at the next use of the lock.  Every PostgreSQL program
 * of Debian 12 loads both libraries (through libldap and libgssapi).
 *
 * So each of those functions is wrapped here: the wrapper makes the first
 * malloc() before calling the C library's function.
 *
 * Also, libubsan (GCC's UBSan runtime is a library of its own) reads its
 * options at its first report, from /proc/self/environ, which PostgreSQL
 * has overwritten by then with the process title: UBSAN_OPTIONS would be
 * lost.  libubsan asks __ubsan_default_options() first; this one, found
 * before libubsan's own when this library comes before it in LD_PRELOAD,
 * answers with UBSAN_OPTIONS as getenv() sees it (PostgreSQL keeps a copy
 * of the environment for that).  And since libubsan's call to set its
 * log_path reaches libasan's function of that name, which comes first,
 * this one sets libubsan's own to $XPLENTY_UBSAN_LOG_PATH.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <libintl.h>
#include <locale.h>
#include <stdlib.h>

static void
init_asan_first(void)
{
	static int	done;

	if (!done)
	{
		/* volatile: a malloc() that is freed at once is optimised away */
		void	   *volatile p = malloc(1);

		free(p);
		done = 1;
	}
}

#define WRAP(ret, name, params, args) \
ret \
name params \
{ \
	static ret (*real) params; \
	init_asan_first(); \
	if (real == NULL) \
		real = (ret (*) params) dlsym(RTLD_NEXT, #name); \
	return real args; \
}

WRAP(char *, setlocale, (int category, const char *locale),
	 (category, locale))
WRAP(locale_t, newlocale, (int mask, const char *locale, locale_t base),
	 (mask, locale, base))
WRAP(char *, bindtextdomain, (const char *domain, const char *dir),
	 (domain, dir))
WRAP(char *, bind_textdomain_codeset, (const char *domain, const char *cs),
	 (domain, cs))
WRAP(char *, textdomain, (const char *domain), (domain))

const char *__ubsan_default_options(void);

const char *
__ubsan_default_options(void)
{
	const char *options = getenv("UBSAN_OPTIONS");
	const char *log_path = getenv("XPLENTY_UBSAN_LOG_PATH");

	if (log_path != NULL)
	{
		void	   *ubsan = dlopen("libubsan.so.1", RTLD_LAZY | RTLD_NOLOAD);
		void		(*set_report_path) (const char *) = NULL;

		if (ubsan != NULL)
			set_report_path = (void (*) (const char *))
				dlsym(ubsan, "__sanitizer_set_report_path");
		if (set_report_path != NULL)
			set_report_path(log_path);
	}
	return options ? options : "";
}
