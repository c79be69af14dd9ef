# Every change of a followed job's status is announced with a NOTIFY on the
# channel xplenty_job_status, whose payload names the queue id, the job id
# and the new status, so that a listener can react without polling.
use strict;
use warnings;
use JSON::PP ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use XplentyTest;

start_mock();
my $node = make_node('notify', create_extension => 1);
$node->append_conf('postgresql.conf', "xplenty.poll_min_interval = '50ms'");
$node->reload;
wait_for_worker($node);

mock_config({ package_timelines => {
	'800' => [ [ 'idle', 0 ], [ 'running', 0.3 ], [ 'completed', 1.0 ] ],
	'801' => [ [ 'idle', 0 ], [ 'queued', 0.3 ], [ 'running', 0.6 ],
			   [ 'failed', 1.2 ] ] } });

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN xplenty_job_status');

my $ok_id = $node->safe_psql('postgres', 'SELECT xplenty_enqueue_job(52, 800)');
my $bad_id = $node->safe_psql('postgres', 'SELECT xplenty_enqueue_job(52, 801)');

# psql prints the notifications it has received after each statement.
my @payloads;
my $deadline = time + 20;
while (time < $deadline)
{
	my $out = $listener->query('SELECT 1');
	push @payloads, map { JSON::PP::decode_json($_) }
	  ($out =~ /Asynchronous notification "xplenty_job_status" with payload "(.*?)" received/g);
	last if 2 == grep { $_->{status} =~ /^(completed|failed)$/ } @payloads;
	sleep 0.1;
}
$listener->quit;

sub statuses_of
{
	my ($queue_id) = @_;
	return join ' ', map { $_->{status} }
	  grep { $_->{queue_id} == $queue_id } @payloads;
}

is(statuses_of($ok_id), 'idle running completed',
	'a completing job is announced at each status');
is(statuses_of($bad_id), 'idle queued running failed',
	'a failing job is announced at each status, failed last');

my %job_of = map { $_->[0] => $_->[1] } map { [ split /\|/ ] } split /\n/,
  $node->safe_psql('postgres', 'SELECT id, job_id FROM xplenty_queue');
ok(!(grep { $_->{job_id} != $job_of{ $_->{queue_id} } } @payloads),
	'every payload names the job of its queue row');
is_deeply([ sort keys %{ $payloads[0] } ], [qw(job_id queue_id status)],
	'a payload holds queue_id, job_id and status');

is($node->safe_psql('postgres',
	"SELECT job_status FROM xplenty_queue WHERE id = $ok_id"),
	'completed', 'the row agrees with the last announcement');

$node->stop;
done_testing();
