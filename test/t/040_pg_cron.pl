# 040_pg_cron.pl - a pg_cron schedule queues a job run with
# xplenty_enqueue_job, and the worker submits it.
#
# pg_cron 1.4 schedules by the minute only, so this test waits for the next
# minute to begin: it takes up to about 70 s.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use XplentyTest;

start_mock();

# pg_cron connects to run a job, by default over TCP to localhost; the test
# cluster listens only on its Unix socket, whose directory is its host.
my $node = make_node(
	'cron',
	preload => 'xplenty, pg_cron',
	start => 0,
	conf => "cron.database_name = 'postgres'\n");
$node->append_conf('postgresql.conf', "cron.host = '" . $node->host . "'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
$node->safe_psql('postgres', 'CREATE EXTENSION xplenty');
ok(wait_for_worker($node), 'the xplenty worker runs beside pg_cron');

my $jobid = $node->safe_psql(
	'postgres', q{
SELECT cron.schedule('xplenty-nightly', '* * * * *',
	$$SELECT xplenty_enqueue_job(52, 434, '{"FROM": "cron"}', NULL, 'cron-nightly')$$)});
like($jobid, qr/^\d+$/, "the schedule is made (cron job $jobid)");

my $t0 = time();
ok( wait_for(
		sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM xplenty_queue WHERE dedup_key = 'cron-nightly' AND status = 'submitted'"
			) >= 1;
		},
		90,
		0.5),
	sprintf('the scheduled request is queued and submitted (after %.0f s)',
		time() - $t0));
$node->safe_psql('postgres', "SELECT cron.unschedule('xplenty-nightly')");

cmp_ok(posts_for({ FROM => 'cron' }),
	'>=', 1, 'the API got a POST /jobs with the variables FROM=cron');
my ($row) = @{ queue_rows($node, "dedup_key = 'cron-nightly'") };
ok($row && $row->{job_id}, 'the queue row holds the job the API created');
is($row && $row->{enqueued_by}, 'postgres',
	'it was queued by the role the cron job runs as');
my @jobs = grep { ($_->{variables}{FROM} // '') eq 'cron' } @{ mock_jobs() };
is($row && $row->{job_id}, $jobs[0] && $jobs[0]{id},
	'and it is the job created with FROM=cron');

ok( wait_for(
		sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM cron.job_run_details WHERE jobid = $jobid AND status = 'succeeded'"
			) >= 1;
		},
		10),
	'cron.job_run_details says the run succeeded');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM cron.job_run_details WHERE jobid = $jobid AND status <> 'succeeded'"
	),
	0,
	'and no run failed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM cron.job'),
	0, 'the schedule is gone after cron.unschedule');

$node->stop;
done_testing();
