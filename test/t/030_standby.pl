# 030_standby.pl - a streaming standby runs no worker and sends nothing; the
# queue it replicated is sent by its worker once it is promoted, every
# request exactly once; and the primary's worker warns, once, that the
# standby is asynchronous.
#
# The worker is registered with BgWorkerStart_RecoveryFinished, so the
# postmaster of a standby does not start it until recovery ends.

use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use XplentyTest;

my $true = JSON::PP::true;

start_mock();

# Requests that fail with 503 are retried, not given up, for the length of
# the test.
my $primary = make_node(
	'primary',
	allows_streaming => 1,
	conf => "xplenty.max_attempts = 1000\n",
	create_extension => 1);
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;

ok(wait_for_worker($primary), 'the primary runs a worker');
is( $standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');
like(
	$standby->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	qr/xplenty/, 'the standby preloads the extension too');
like($standby->safe_psql('postgres', 'SHOW xplenty.api_url'),
	qr{^http://127\.0\.0\.1:\d+$}, 'and points at the same mock API');

# The API is unavailable for package 440: its requests stay queued, retried.
mock_faults(
	{
		method => 'POST',
		path => '^/jobs$',
		package_id => 440,
		status => 503,
		times => -1,
		comment => 'overloaded'
	});
enqueue_many($primary, 5, 'standby-', 440);
ok( wait_for(
		sub {
			my $n = 0;
			$n += posts_for({ REQ => "standby-$_" }) > 0 for 1 .. 5;
			$n == 5;
		},
		20),
	'the primary tried to send each of the 5 requests');
my $c = queue_status_counts($primary);
is(($c->{queued} // 0) + ($c->{submitting} // 0),
	5, 'they are still pending on the primary (503 is retried)')
  or diag explain $c;
$primary->wait_for_catchup($standby);

# The standby streams asynchronously: the primary's worker, which retries
# the 503s in rounds all along, says once what that risks.
my $async_warning =
  qr/WARNING:  standby "[^"]+" receives this server's WAL asynchronously/;
ok( wait_for(sub { $primary->log_contains($async_warning) }, 30),
	'the primary\'s worker warns that the standby is asynchronous');

is($standby->safe_psql('postgres', 'SELECT count(*) FROM xplenty_queue'),
	5, 'the standby has replicated the 5 queued requests');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'xplenty worker'"
	),
	0,
	'the standby runs no xplenty worker');
ok(!$standby->log_contains(qr/xplenty worker started/),
	'nor did it ever start one');

# It looks every 10 s at most; after more than that, still one warning.
sleep 11;
my @warnings = (slurp_file($primary->logfile) =~ /$async_warning/g);
is(scalar @warnings, 1, 'and warns only once about it');

# With the primary gone only the standby runs: nothing reaches the API.
$primary->stop('fast');
my $requests = mock_stats()->{requests};
sleep 3;
is(mock_stats()->{requests},
	$requests, 'while only the standby runs, the API gets no request at all');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'xplenty worker'"
	),
	0,
	'and the standby still runs no worker');

# Promotion: the new primary's worker sends the queue.
mock_clear_faults();
my $seq = last_seq();
ok(promote_and_wait($standby), 'the standby is promoted');
ok(wait_for_worker($standby, 30), 'the promoted standby starts a worker');
ok( wait_for(
		sub {
			(queue_status_counts($standby)->{submitted} // 0) == 5;
		},
		30),
	'it submits the 5 queued requests');

# Every POST before the promotion was answered 503 and created nothing; after
# it, each request is sent exactly once.
my @after = @{ requests_since($seq, method => 'POST', path => qr{/jobs$}) };
my %sent;
$sent{ $_->{json}{variables}{REQ} }++ for @after;
is_deeply(\%sent, { map { ("standby-$_" => 1) } 1 .. 5 },
	'after the promotion each request was POSTed exactly once');
my @jobs = grep { ($_->{variables}{REQ} // '') =~ /^standby-/ } @{ mock_jobs() };
is(scalar @jobs, 5, 'the API created exactly 5 jobs for them');
my %job_of = map { $_->{variables}{REQ} => $_->{id} } @jobs;
my @rows = @{ queue_rows($standby) };
is(scalar(grep { ($job_of{ $_->{req} } // -1) == ($_->{job_id} // -2) } @rows),
	5, 'and each row holds the job created for it');

$standby->stop;
done_testing();
