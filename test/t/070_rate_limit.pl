# The worker keeps within the API's rate limit: a 429 pauses all sending
# (for Retry-After when the API gives one), and so does an
# X-RateLimit-Remaining at or below xplenty.rate_limit_reserve.
use strict;
use warnings;
use JSON::PP ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use XplentyTest;

start_mock();
my $node = make_node('ratelimit', create_extension => 1);
wait_for_worker($node);

sub submitted
{
	my ($where) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM xplenty_queue WHERE status = 'submitted' AND $where");
}

# A 429 with Retry-After: 2 on the first POST.
mock_faults({ method => 'POST', path => '^/jobs$', package_id => 900,
			  status => 429, headers => { 'Retry-After' => '2' },
			  body => { message => 'Rate Limit Exceeded' }, times => 1 });
$node->safe_psql('postgres', 'SELECT xplenty_enqueue_job(52, 900)');
ok(wait_for(sub { submitted('package_id = 900') == 1 }, 20),
	'the request refused with 429 is submitted in the end');
my @posts = map { $_->{time} }
  grep { $_->{method} eq 'POST' } @{ mock_requests() };
is(scalar @posts, 2, 'it took two POSTs');
cmp_ok($posts[1] - $posts[0], '>=', 1.9,
	'the second waited for the Retry-After of the first');

# Credits running out: the API says 11 left, then 10, the reserve.
mock_reset();
mock_config({ credits_remaining => 12 });
my $offset = -s $node->logfile;
$node->safe_psql('postgres', 'SELECT xplenty_enqueue_job(52, 901)');
ok(wait_for(sub { submitted('package_id = 901') == 1 }, 10), 'first sent');
$node->safe_psql('postgres', 'SELECT xplenty_enqueue_job(52, 902)');
ok(wait_for(sub { submitted('package_id = 902') == 1 }, 10),
	'second sent; the API now reports 10 credits left');
$node->safe_psql('postgres', 'SELECT xplenty_enqueue_job(52, 903)');
sleep 4;
is(submitted('package_id = 903'), '0',
	'with the reserve reached, the next request waits');
is($node->safe_psql('postgres',
	'SELECT status FROM xplenty_queue WHERE package_id = 903'),
	'queued', 'and stays queued, not failed');
like(slurp_file($node->logfile, $offset),
	qr/xplenty worker pauses for \d+ ms: the API's rate limit is reached or close/,
	'the pause is logged');

$node->stop;
done_testing();
