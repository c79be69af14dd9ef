# Makefile for the xplenty extension (PGXS)

PG_CONFIG ?= pg_config

EXTENSION = xplenty
MODULE_big = xplenty
OBJS = \
	src/answer.o \
	src/answer_jsonb.o \
	src/answer_text.o \
	src/api.o \
	src/arg_checks.o \
	src/config.o \
	src/enqueue.o \
	src/failure.o \
	src/http_client.o \
	src/http_headers.o \
	src/job_check.o \
	src/job_request.o \
	src/jobs.o \
	src/poll.o \
	src/quick_json.o \
	src/queue.o \
	src/retry.o \
	src/run_job.o \
	src/standby.o \
	src/wait.o \
	src/wakeup.o \
	src/worker.o \
	src/xplenty.o

DATA = sql/xplenty--1.0.sql
PGFILEDESC = "xplenty - launch Xplenty jobs from PostgreSQL"

# The regression tests need the mock API and a preloaded library: run them
# with test/run.sh, which sets both up (see README.md).
REGRESS = run_job queue follow security

# PostgreSQL's headers are taken as system headers, so that -Wextra judges
# only our own code (they have unused parameters in inline functions).
PG_CPPFLAGS = -Isrc -isystem $(shell $(PG_CONFIG) --includedir-server) \
	$(shell curl-config --cflags)
PG_CFLAGS = -Wall -Wextra -Werror
SHLIB_LINK = $(shell curl-config --libs)

# "make SANITIZE=1": build with AddressSanitizer and UndefinedBehaviorSanitizer
# (README.md, "Sanitizers").  The server must then run with libasan preloaded;
# test/run.sh does that when SANITIZE=1 is in its environment.  Both builds
# make the same files: "make clean" between them, or build a copy of the
# tree, as test/run.sh does.
ifeq ($(SANITIZE),1)
SANITIZE_FLAGS = -fsanitize=address,undefined \
	-fsanitize=float-divide-by-zero,float-cast-overflow \
	-fsanitize-recover=undefined,float-divide-by-zero,float-cast-overflow \
	-fno-omit-frame-pointer
PG_CFLAGS += $(SANITIZE_FLAGS)
SHLIB_LINK += $(SANITIZE_FLAGS)
endif

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
