# async_failover.pl - an experiment, not part of test/run.sh: part 1 of
# test/t/080_failover.pl with an asynchronous standby.  It shows why
# exactly-once across a failover needs synchronous_standby_names: claims
# that never reached the standby are sent by the old primary AND again by
# the promoted standby.
#
# The 20 requests reach the standby while the worker cannot send (its key
# file is missing); the primary's walsender is stopped (SIGSTOP), so that
# nothing more reaches the standby; the key is given back, and the worker,
# whose commits wait for nobody, claims and sends all 20.  The primary then
# dies (-m immediate); on the promoted standby the 20 are still 'queued',
# and its worker sends them again.
#
# Run it as root from the top of the repository (like test/run.sh does for
# test/t/*.pl):
#   d=$(mktemp -d); chown postgres $d; pgxs=$(dirname $(pg_config --pgxs))
#   (cd $d && runuser -u postgres -- env PATH=/usr/lib/postgresql/15/bin:$PATH \
#      PERL5LIB=$pgxs/../test/perl:$PWD/test/t XPLENTY_TOP=$PWD \
#      PG_REGRESS=$pgxs/../test/regress/pg_regress \
#      prove -v $OLDPWD/test/soak/async_failover.pl)
# Its "sent twice" test passes when the duplicates happen, as they did
# every time it was run (20 of 20); see test/RELIABILITY.md, "Failover".

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use XplentyTest;

start_mock();
my $primary = make_node(
	'primary',
	allows_streaming => 1,
	conf => "xplenty.max_in_flight = 16\n",
	create_extension => 1);
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
is($primary->safe_psql('postgres', 'SHOW synchronous_standby_names'),
	'', 'the standby is asynchronous');

$primary->safe_psql('postgres',
	"ALTER SYSTEM SET xplenty.api_key_file = '/nonexistent'; SELECT pg_reload_conf()");
ok( wait_for(
		sub { $primary->log_contains(qr/xplenty worker cannot send requests/) },
		10),
	'the worker cannot send (no key)');
$primary->safe_psql('postgres',
	"SELECT count(xplenty_enqueue_job(52, 434, jsonb_build_object('REQ', 'as-' || i))) "
	  . "FROM generate_series(1, 20) i");
$primary->wait_for_catchup($standby);
my $walsender = $primary->safe_psql('postgres',
	'SELECT pid FROM pg_stat_replication');
END { kill 'CONT', $walsender if $walsender && $walsender =~ /^\d+$/; }
kill 'STOP', $walsender;
$primary->safe_psql('postgres',
	"ALTER SYSTEM RESET xplenty.api_key_file; SELECT pg_reload_conf()");
ok( wait_for(
		sub {
			(queue_status_counts($primary, "variables->>'REQ' LIKE 'as-%'")
				  ->{submitted} // 0) == 20;
		},
		20),
	'the primary sent all 20: its commits wait for no standby');
$primary->stop('immediate');
kill 'CONT', $walsender;
is( $standby->safe_psql('postgres',
		"SELECT string_agg(DISTINCT status, ',') FROM xplenty_queue WHERE variables->>'REQ' LIKE 'as-%'"
	),
	'queued',
	'on the standby the 20 requests are still queued');
promote_and_wait($standby);
ok( wait_for(
		sub {
			(queue_status_counts($standby, "variables->>'REQ' LIKE 'as-%'")
				  ->{submitted} // 0) == 20;
		},
		30),
	'the promoted standby sent them too');
my $posts = post_counts();
my $twice = grep { ($posts->{$_} // 0) > 1 } map { var_key({ REQ => "as-$_" }) } 1 .. 20;
my $jobs = grep { ($_->{variables}{REQ} // '') =~ /^as-/ } @{ mock_jobs() };
note "asynchronous failover: $twice of 20 requests POSTed twice; "
  . "$jobs jobs created for 20 requests";
cmp_ok($twice, '>', 0,
	"sent twice: $twice of 20 requests, $jobs jobs for 20 requests");
$standby->stop;
done_testing();
