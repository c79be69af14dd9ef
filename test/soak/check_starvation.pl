# check_starvation.pl - a reproducer, not part of test/run.sh: a request
# whose answer was lost, with 1,199 requests of the same package queued
# behind it, must end submitted (its POST created no job: a check finds
# none and it is sent again).  Before edbe17f it ended 'unknown', which
# needs a person.
#
# Why it did: claim_work (src/worker.c) claimed 'queued' requests first and
# 'checking' ones only with the room left, so the check waited until the
# backlog was sent; by then the package had more than 1,000 jobs created
# since 5 minutes before the first send, more than a check reads
# (XPLENTY_CHECK_MAX_PAGES pages of 100, src/job_check.c), and the request
# was given up as unknown.  edbe17f lets checks take up to a quarter of
# the room first; see test/RELIABILITY.md, "Soak".
#
# Run it as root from the top of the repository:
#   d=$(mktemp -d); chown postgres $d; pgxs=$(dirname $(pg_config --pgxs))
#   (cd $d && runuser -u postgres -- env PATH=/usr/lib/postgresql/15/bin:$PATH \
#      PERL5LIB=$pgxs/../test/perl:$OLDPWD/test/t XPLENTY_TOP=$OLDPWD \
#      PG_REGRESS=$pgxs/../test/regress/pg_regress \
#      prove -v $OLDPWD/test/soak/check_starvation.pl)

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use XplentyTest;

start_mock();
my $node = make_node(
	'starve',
	conf => "xplenty.max_in_flight = 16\nxplenty.poll_budget = 0\n",
	create_extension => 1);
ok(wait_for_worker($node), 'the worker runs');

# The first POST of package 500 loses its answer and creates no job.
mock_faults(
	{
		method => 'POST',
		path => '^/jobs$',
		package_id => 500,
		action => 'close',
		times => 1,
		comment => 'answer lost, no job'
	});
$node->safe_psql('postgres',
	"SELECT count(xplenty_enqueue_job(52, 500, jsonb_build_object('REQ', 'st-' || i))) "
	  . "FROM generate_series(1, 1200) i");
ok( wait_for(
		sub {
			my $c = queue_status_counts($node);
			!($c->{queued} || $c->{submitting} || $c->{checking});
		},
		180),
	'every request is final');
my ($lost) = grep { ($_->{attempts} > 1 || $_->{checks} > 0) }
  @{ queue_rows($node) };
ok($lost, 'one request lost its answer and was checked');
note explain $lost;
is($lost && $lost->{status}, 'submitted',
	'the request whose answer was lost ends submitted')
  or diag 'it ended ' . ($lost ? "$lost->{status}: $lost->{last_error}" : '?');
is(posts_for({ REQ => $lost ? $lost->{req} : '' }),
	($lost && $lost->{status} eq 'submitted') ? 2 : 1,
	'it was POSTed again only if it was submitted');
$node->stop;
done_testing();
