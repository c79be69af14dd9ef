# 050_cancel_and_secrets.pl - a synchronous call waiting for the API answers
# a cancel and statement_timeout at once and leaves its session usable; the
# API key never reaches the server log; an ordinary role can neither read
# the key, nor redirect requests, nor launch jobs until granted; and the
# server's environment does not choose the proxy.

use strict;
use warnings;

use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use XplentyTest;

my $true = JSON::PP::true;

# A key of our own, so that finding it anywhere means it leaked.
my $key = 'Right-Key-5f3a9c0d71';
start_mock(api_key => $key);

my $node = make_node(
	'main',
	conf => "xplenty.api_key = '$key'\n",
	create_extension => 1);

my %hang = (
	method => 'POST',
	path => '^/jobs$',
	action => 'hang',
	hang_s => 30,
	times => 1,
	comment => 'no answer');

# The job the mock created for {"REQ": $req}, or undef.
sub job_for
{
	my ($req) = @_;
	my @j = grep { ($_->{variables}{REQ} // '') eq $req } @{ mock_jobs() };
	return @j == 1 ? $j[0] : undef;
}

# Pump a background psql until its stderr matches, or $timeout passes.
sub wait_stderr
{
	my ($bg, $re, $timeout) = @_;
	return wait_for(
		sub {
			$bg->{run}->pump_nb;
			return $bg->{stderr} =~ $re;
		},
		$timeout,
		0.01);
}

# --- (a) cancel and statement_timeout ------------------------------------
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	my $bpid = $bg->query_safe('SELECT pg_backend_pid()');

	is( $bg->query_safe(
			q{SELECT xplenty_run_job(52, 434, '{"REQ": "warm-up"}')->>'id'}),
		job_for('warm-up')->{id},
		'cancel: a first call in the session works');

	mock_faults({%hang});
	my $seq = last_seq();
	$bg->{stderr} = '';
	$bg->query_until(qr/calling/,
		qq{\\echo calling\nSELECT xplenty_run_job(52, 434, '{"REQ": "cancel-me"}');\n}
	);
	ok( wait_for(
			sub {
				@{ requests_since($seq, method => 'POST') } == 1
				  && $node->safe_psql('postgres',
					"SELECT wait_event_type FROM pg_stat_activity WHERE pid = $bpid"
				  ) eq 'Extension';
			},
			10),
		'cancel: the call is waiting for an API that does not answer');

	my $t0 = time();
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($bpid)");
	ok(wait_stderr($bg, qr/ERROR/, 10), 'cancel: the call ended');
	my $took = time() - $t0;
	like(
		$bg->{stderr},
		qr/ERROR:  canceling statement due to user request/,
		'cancel: with "canceling statement due to user request"');
	ok($took < 1, sprintf('cancel: %.2f s after pg_cancel_backend', $took));

	$bg->{stderr} = '';
	my ($id, $err) = $bg->query(
		q{SELECT xplenty_run_job(52, 434, '{"REQ": "after-cancel"}')->>'id'});
	is($bg->{stderr}, '', 'cancel: the session can call the API again');
	my $job = job_for('after-cancel');
	is($id, $job && $job->{id}, 'cancel: and gets the job that call created');
	is(posts_for({ REQ => 'cancel-me' }),
		1, 'cancel: the cancelled request was not sent again');
	ok(!job_for('cancel-me'), 'cancel: and created no job');
	is($bg->query_safe('SELECT pg_backend_pid()'),
		$bpid, 'cancel: in the same backend');

	# statement_timeout, in the same session.
	$bg->query_safe(q{SET statement_timeout = '500ms'});
	mock_faults({%hang});
	$bg->{stderr} = '';
	$t0 = time();
	$bg->query(q{SELECT xplenty_run_job(52, 434, '{"REQ": "time-me-out"}')});
	$took = time() - $t0;
	like(
		$bg->{stderr},
		qr/ERROR:  canceling statement due to statement timeout/,
		'timeout: a hanging call ends with "canceling statement due to statement timeout"'
	);
	ok($took < 2, sprintf('timeout: after %.2f s (statement_timeout 500ms)', $took));
	$bg->{stderr} = '';
	($id) = $bg->query(
		q{SELECT xplenty_run_job(52, 434, '{"REQ": "after-timeout"}')->>'id'});
	is($bg->{stderr}, '', 'timeout: the next call in the session works');
	$job = job_for('after-timeout');
	is($id, $job && $job->{id}, 'timeout: and returns its job');
	is(posts_for({ REQ => 'time-me-out' }),
		1, 'timeout: the timed out request was not sent again');
	$bg->quit;
}

# --- (c) an ordinary role ----------------------------------------------
{
	$node->safe_psql('postgres', 'CREATE ROLE alice LOGIN');

	my $as_alice = sub {
		my ($sql) = @_;
		my ($rc, $out, $err) =
		  $node->psql('postgres', $sql, extra_params => [ '-U', 'alice' ]);
		return ($rc, $out // '', $err // '');
	};
	my $refused = sub {
		my ($sql, $re, $name) = @_;
		local $Test::Builder::Level = $Test::Builder::Level + 1;
		my ($rc, $out, $err) = $as_alice->($sql);
		ok($rc != 0 && $err =~ $re && $out !~ /\Q$key\E/, "alice: $name")
		  or diag "rc $rc, out '$out', err '$err'";
	};

	is(($as_alice->('SELECT current_user'))[1], 'alice', 'alice can log in');
	my $cannot_see =
	  qr/must be superuser or have privileges of pg_read_all_settings to examine "xplenty\.api_key"/;
	$refused->('SHOW xplenty.api_key', $cannot_see, 'SHOW xplenty.api_key is refused');
	$refused->(q{SELECT current_setting('xplenty.api_key')},
		$cannot_see, 'current_setting(xplenty.api_key) is refused');
	$refused->(q{SELECT current_setting('xplenty.api_key', true)},
		$cannot_see, 'current_setting(xplenty.api_key, missing_ok) is refused');
	my ($rc, $out) = $as_alice->(
		q{SELECT count(*) FROM pg_settings WHERE name = 'xplenty.api_key'});
	is($out, '0', 'alice: pg_settings has no row for xplenty.api_key');
	($rc, $out) = $as_alice->(
		"SELECT count(*) FROM pg_settings WHERE setting LIKE '%$key%' OR reset_val LIKE '%$key%' OR boot_val LIKE '%$key%'"
	);
	is($out, '0', 'alice: no row of pg_settings shows the key');
	($rc, $out) = $as_alice->('SHOW ALL');
	is($rc, 0, 'alice: SHOW ALL works');
	unlike($out, qr/\Q$key\E/, 'alice: SHOW ALL does not show the key');
	$refused->(q{SELECT * FROM pg_file_settings},
		qr/permission denied/, 'pg_file_settings is refused');

	for my $set (
		[ 'xplenty.api_key', q{'stolen'} ],
		[ 'xplenty.api_key_file', q{'/tmp/alice-key'} ],
		[ 'xplenty.api_url', q{'http://127.0.0.1:1'} ],
		[ 'xplenty.account_id', q{'someone-else'} ],
		[ 'xplenty.proxy', q{'http://127.0.0.1:1'} ],
		[ 'xplenty.tls_verify', 'off' ],
		[ 'xplenty.ca_file', q{'/tmp/alice-ca.pem'} ])
	{
		my ($name, $value) = @$set;
		$refused->("SET $name = $value",
			qr/permission denied to set parameter "\Q$name\E"/,
			"SET $name is refused");
	}
	$refused->(
		q{SELECT set_config('xplenty.api_url', 'http://127.0.0.1:1', false)},
		qr/permission denied to set parameter "xplenty\.api_url"/,
		'set_config(xplenty.api_url) is refused');
	$refused->(
		q{ALTER ROLE alice SET xplenty.api_url = 'http://127.0.0.1:1'},
		qr/permission denied to set parameter "xplenty\.api_url"/,
		'ALTER ROLE alice SET xplenty.api_url is refused');

	my $posts = mock_stats()->{run_job_posts};
	$refused->(q{SELECT xplenty_run_job(52, 434, '{"REQ": "alice-1"}')},
		qr/permission denied for function xplenty_run_job/,
		'xplenty_run_job is refused without a grant');
	$refused->(q{SELECT xplenty_enqueue_job(52, 434, '{"REQ": "alice-2"}')},
		qr/permission denied for function xplenty_enqueue_job/,
		'xplenty_enqueue_job is refused without a grant');
	$refused->(q{SELECT count(*) FROM xplenty_queue},
		qr/permission denied for table xplenty_queue/,
		'the queue cannot be read without a grant');
	is(mock_stats()->{run_job_posts}, $posts, 'alice: nothing was sent');
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM xplenty_queue WHERE enqueued_by = 'alice'"),
		0, 'alice: nothing was queued');

	$node->safe_psql(
		'postgres', q{
GRANT EXECUTE ON FUNCTION xplenty_run_job TO alice;
GRANT EXECUTE ON FUNCTION xplenty_enqueue_job TO alice;
GRANT SELECT ON xplenty_queue TO alice;});

	my $err;
	($rc, $out, $err) =
	  $as_alice->(q{SELECT xplenty_run_job(52, 434, '{"REQ": "alice-3"}')->>'id'});
	my $job = job_for('alice-3');
	ok($rc == 0 && $job && $out eq $job->{id},
		'alice: after GRANT EXECUTE, xplenty_run_job runs a job')
	  or diag "rc $rc, out '$out', err '$err'";
	($rc, $out, $err) = $as_alice->(
		q{SELECT xplenty_enqueue_job(52, 434, '{"REQ": "alice-4"}')});
	ok($rc == 0 && $out =~ /^\d+$/, 'alice: and xplenty_enqueue_job queues one')
	  or diag "rc $rc, out '$out', err '$err'";
	my $qid = $out;
	ok( wait_for(
			sub {
				($as_alice->(
					"SELECT status FROM xplenty_queue WHERE id = $qid"))[1] eq
				  'submitted';
			},
			15),
		'alice: which the worker submits');
	is( $node->safe_psql('postgres',
			"SELECT enqueued_by FROM xplenty_queue WHERE id = $qid"),
		'alice', 'alice: the row says alice queued it');
	$refused->(
		"UPDATE xplenty_queue SET status = 'queued', job_id = NULL WHERE id = $qid",
		qr/permission denied for table xplenty_queue/,
		'the queue still cannot be changed directly');
	$refused->(
		q{INSERT INTO xplenty_queue (cluster_id, package_id, enqueued_by) VALUES (52, 434, 'bob')},
		qr/permission denied for table xplenty_queue/,
		'nor written to');
	$refused->('SHOW xplenty.api_key', $cannot_see,
		'the grants do not reveal the key');
}

# --- (d) only xplenty.proxy decides the proxy -----------------------------
#
# A no_proxy in the server's environment that names the API's host would
# have libcurl go around the proxy; the extension does not let it.
{
	$node->stop;
	{
		local $ENV{no_proxy} = '127.0.0.1';
		local $ENV{NO_PROXY} = '127.0.0.1';
		$node->start;
	}
	my $posts = mock_stats()->{run_job_posts};
	my ($ret, $out, $err) = $node->psql('postgres',
		q{SET xplenty.proxy = 'http://127.0.0.1:1';
		  SELECT xplenty_run_job(52, 434)});
	isnt($ret, 0, 'proxy: the call fails on the proxy that cannot be reached');
	like($err, qr/could not run Xplenty package 434/,
		'proxy: with the usual error');
	is(mock_stats()->{run_job_posts}, $posts,
		'proxy: no_proxy in the environment did not send it around the proxy');
	is($node->safe_psql('postgres',
			q{SELECT xplenty_run_job(52, 434) ->> 'id' IS NOT NULL}),
		't', 'proxy: without xplenty.proxy the call goes straight to the API');
}

$node->stop;

# --- (b) the API key never reaches the server log ------------------------
#
# Every failure path is logged at debug2, with the key once in
# postgresql.conf (read at start, never changed), and once in
# xplenty.api_key_file, rotated without a reload.
{
	my $key_file = "$PostgreSQL::Test::Utils::tmp_check/xplenty_api_key";
	my $wrong = 'Wrong-Key-0b9e44c2aa';
	my $rotated = 'Rotated-Wrong-Key-c8d1e07f';
	my $decoy = 'Decoy-Key-19af3e5b6d';

	my $write_key = sub {
		my ($k) = @_;
		open(my $fh, '>', "$key_file.tmp") or die "$key_file.tmp: $!";
		print $fh "$k\n";
		close $fh;
		chmod 0600, "$key_file.tmp";
		rename("$key_file.tmp", $key_file) or die "rename: $!";
	};

	my $keys = make_node(
		'keys',
		conf => "xplenty.api_key = '$key'\n"
		  . "log_min_messages = debug2\n"
		  . "log_statement = 'none'\n"
		  . "log_min_error_statement = error\n",
		create_extension => 1);

	# Run SQL in one session; return [stdout, stderr].
	my $sql = sub {
		my ($text) = @_;
		my ($rc, $out, $err) = $keys->psql('postgres', $text,
			on_error_stop => 0);
		return [ $out // '', $err // '' ];
	};
	my $run = q{SELECT xplenty_run_job(52, 434, '{"REQ": "%s"}')->>'id';};

	like($sql->(sprintf $run, 'key-ok-1')->[0],
		qr/^\d+$/, 'log: a call with the key from postgresql.conf works');

	my $r = $sql->("SET xplenty.api_key = '$wrong';\n" . sprintf($run, 'key-401'));
	like($r->[1], qr/HTTP status 401/, 'log: a wrong key gets a 401');
	unlike($r->[1], qr/\Q$wrong\E/, 'log: the 401 error does not quote the key');

	my $closed = PostgreSQL::Test::Cluster::get_free_port();
	$r = $sql->("SET xplenty.api_url = 'http://127.0.0.1:$closed';\n"
		  . sprintf($run, 'key-refused'));
	like($r->[1], qr/Could not connect/, 'log: a refused connection fails');

	mock_faults(
		{
			method => 'POST',
			path => '^/jobs$',
			status => 422,
			body => { message => 'Validation failed', errors => ['no such package'] },
			times => 1
		});
	$r = $sql->(sprintf $run, 'key-422');
	like($r->[1], qr/HTTP status 422/, 'log: a 422 fails');

	$r = $sql->("SET xplenty.api_key_file = '/nonexistent/key';\n"
		  . sprintf($run, 'key-nofile'));
	like($r->[1], qr/could not open xplenty\.api_key_file/,
		'log: a missing key file fails');

	# The worker's failures too: a 401 it gives up on, and a lost answer.
	mock_faults(
		[
			{ method => 'POST', path => '^/jobs$', package_id => 450,
				status => 401, times => 1 },
			{ method => 'POST', path => '^/jobs$', package_id => 451,
				action => 'close', times => 1 }
		]);
	$sql->(q{SELECT xplenty_enqueue_job(52, 450, '{"REQ": "key-w401"}');
	         SELECT xplenty_enqueue_job(52, 451, '{"REQ": "key-wclose"}');});
	ok( wait_for(
			sub {
				queue_status_counts($keys, 'package_id IN (450, 451)')->{failed}
				  && queue_status_counts($keys, 'package_id IN (450, 451)')
				  ->{submitted};
			},
			20),
		'log: the worker gave up on the 401 and got over the lost answer');

	# The key in a file: it wins over xplenty.api_key, and is read at each
	# use, so a new key needs no reload.
	$write_key->($key);
	$keys->append_conf('postgresql.conf', "xplenty.api_key_file = '$key_file'");
	$keys->reload;
	ok( wait_for(
			sub {
				$keys->safe_psql('postgres', 'SHOW xplenty.api_key_file') eq
				  $key_file;
			},
			10),
		'log: xplenty.api_key_file is set');
	sleep 0.5;    # the worker reloads too
	like($sql->("SET xplenty.api_key = '$decoy';\n" . sprintf($run, 'file-ok-1'))->[0],
		qr/^\d+$/, 'log: the key file is used, not xplenty.api_key');

	my $pid = worker_pid($keys);
	$write_key->($rotated);
	$r = $sql->(sprintf $run, 'file-rotated');
	like($r->[1], qr/HTTP status 401/,
		'log: a key rotated in the file is used at once, without a reload');
	$sql->(q{SELECT xplenty_enqueue_job(52, 434, '{"REQ": "file-worker-401"}')});
	ok( wait_for(
			sub {
				$keys->safe_psql('postgres',
					"SELECT status FROM xplenty_queue WHERE variables->>'REQ' = 'file-worker-401'"
				) eq 'failed';
			},
			15),
		'log: the worker uses the rotated key too (and gets its 401)');

	$write_key->($key);
	like($sql->(sprintf $run, 'file-ok-2')->[0],
		qr/^\d+$/, 'log: rotated back, calls work again');
	$sql->(q{SELECT xplenty_enqueue_job(52, 434, '{"REQ": "file-worker-ok"}')});
	ok( wait_for(
			sub {
				$keys->safe_psql('postgres',
					"SELECT status FROM xplenty_queue WHERE variables->>'REQ' = 'file-worker-ok'"
				) eq 'submitted';
			},
			15),
		'log: and so does the worker');
	is(worker_pid($keys), $pid, 'log: with the same worker process');

	my $log = slurp_file($keys->logfile);
	like($log, qr/DEBUG:/, 'log: the server logged at debug level');
	like($log, qr/HTTP status 401/, 'log: and logged the failures');
	for my $k ($key, $wrong, $rotated, $decoy)
	{
		my $b64 = encode_base64("$k:", '');
		ok($log !~ /\Q$k\E/ && $log !~ /\Q$b64\E/,
			"log: the server log never shows the key $k (nor its Basic credentials)"
		);
	}

	# What PostgreSQL itself does when the key changes in postgresql.conf:
	# the postmaster logs every changed setting at a reload (at LOG; each
	# backend too, at DEBUG2), with its value.  Nothing the extension can
	# stop: put the key in xplenty.api_key_file.
	my $offset = -s $keys->logfile;
	my $changed = 'Changed-In-Conf-Key-77e1';
	$keys->append_conf('postgresql.conf', "xplenty.api_key = '$changed'");
	$keys->reload;
	my $logged = wait_for(
		sub { $keys->log_contains(qr/\Q$changed\E/, $offset) }, 5);
	note $logged
	  ? 'PostgreSQL logged the changed xplenty.api_key at the reload: '
	  . join(' | ', grep { /\Q$changed\E/ }
		  split /\n/, slurp_file($keys->logfile, $offset))
	  : 'PostgreSQL did not log the changed xplenty.api_key at the reload';

	$keys->stop;
}

done_testing();
