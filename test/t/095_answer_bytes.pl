# 095_answer_bytes.pl - the jsonb that xplenty_run_job builds from an
# answer in one pass (src/quick_json.c, src/answer_jsonb.c) is, byte for
# byte, the jsonb that jsonb_in makes of the same text.
#
# The inputs are the fuzz_quick_json corpus (fuzz/corpus/), each one that
# is valid UTF-8 and that jsonb_in takes, and documents made up here from
# a fixed seed: nested containers, objects and arrays past the 32 entries
# after which jsonb stores an offset, keys given twice, escapes, numbers
# of every form the reader takes.  Each is sent by the mock as the "x" of
# a job {"id": 1, "x": ...}.  The two datums are stored side by side in a
# table with no compression or TOAST, and pageinspect's tuple_data_split
# gives their bytes to compare.

use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use XplentyTest;

# Both datums of a pair must fit in one heap page.
my $max_input = 2000;

start_mock();
my $node = make_node('bytes', create_extension => 1);

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION pageinspect;
CREATE TABLE corpus (n int PRIMARY KEY, body text);
CREATE TABLE answer_pair (built jsonb, parsed jsonb);
ALTER TABLE answer_pair ALTER built SET STORAGE PLAIN,
	ALTER parsed SET STORAGE PLAIN;

-- jsonb_in's reading of t, or NULL where it refuses it.
CREATE FUNCTION jsonb_or_null(t text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	RETURN t::jsonb;
EXCEPTION WHEN others THEN
	RETURN NULL;
END $$;

-- Are the two datums the same bytes, as stored?
CREATE FUNCTION same_bytes(built jsonb, parsed jsonb) RETURNS bool
LANGUAGE plpgsql AS $$
DECLARE
	attrs bytea[];
BEGIN
	TRUNCATE answer_pair;
	INSERT INTO answer_pair VALUES (built, parsed);
	SELECT tuple_data_split('answer_pair'::regclass, t_data, t_infomask,
							t_infomask2, t_bits)
	  INTO attrs
	  FROM heap_page_items(get_raw_page('answer_pair', 0));
	RETURN attrs[1] = attrs[2];
END $$;
});

# The corpus, as text: what is not valid UTF-8 or holds a zero byte never
# reaches the quick reader.
# A made-up JSON value, at most $depth levels deep.
sub random_json
{
	my ($depth) = @_;
	my $pick = int(rand($depth > 0 ? 10 : 6));
	my @keys = ('id', 'a', 'b', 'url', 'name', '', "\x{e9}", 'status', 'kkk');
	if ($pick == 0)
	{
		my @n = ('0', '-0', '7', '-42', '1.5', '-12.250', '0.0', '10000',
			'123456789012345678', '1234567890123456789', '0.000001',
			'99999999999999999999999999999999999999');
		return $n[ int(rand(@n)) ];
	}
	return ('true', 'false', 'null')[ int(rand(3)) ] if $pick == 1;
	if ($pick <= 5)
	{
		my @parts = ('x', 'plain text ', '\\\\', '\\"', '\\n', '\\t', '\\/',
			'\\u00e9', '\\ud83d\\ude00', "\x{4e2d}", "\x{1F600}", '');
		return '"'
		  . join('', map { $parts[ int(rand(@parts)) ] } 1 .. int(rand(6)))
		  . '"';
	}
	my $n = int(rand(4)) == 0 ? 30 + int(rand(40)) : int(rand(5));
	if ($pick <= 7)
	{
		return '['
		  . join(', ', map { random_json($depth - 1) } 1 .. $n) . ']';
	}
	return '{'
	  . join(
		', ',
		map {
			my $key = int(rand(3)) ? $keys[ int(rand(@keys)) ] : "k$_";
			qq("$key": ) . random_json($depth - 1)
		} 1 .. $n)
	  . '}';
}

my $dir = XplentyTest::top() . '/fuzz/corpus/fuzz_quick_json';
opendir(my $dh, $dir) or die "cannot read $dir: $!";
my @files = sort grep { -f "$dir/$_" } readdir $dh;
closedir $dh;
my $n = 0;
my @rows;
foreach my $file (@files)
{
	my $bytes = slurp_file("$dir/$file");
	next if length($bytes) > $max_input || $bytes =~ /\0/;
	my $text = $bytes;
	next unless utf8::decode($text);
	push @rows, sprintf("(%d, convert_from('\\x%s', 'UTF8'))",
		++$n, unpack('H*', $bytes));
}
srand(4242);
my $made = 0;
while ($made < 300)
{
	my $text = random_json(4);
	next if length($text) > $max_input;
	my $bytes = $text;
	utf8::encode($bytes);
	push @rows, sprintf("(%d, convert_from('\\x%s', 'UTF8'))",
		++$n, unpack('H*', $bytes));
	$made++;
}
$node->safe_psql('postgres',
	'INSERT INTO corpus VALUES ' . join(",\n", @rows));

# Those jsonb_in takes, wrapped as a job, each the mock's next answer.
my $taken = $node->safe_psql('postgres',
	q{SELECT count(*) FROM corpus WHERE jsonb_or_null(body) IS NOT NULL});
cmp_ok($taken, '>=', 350, "at least 350 inputs taken ($taken)");

my @bodies = split /\n/, $node->safe_psql('postgres',
	q{SELECT encode(convert_to(body, 'UTF8'), 'hex') FROM corpus
	  WHERE jsonb_or_null(body) IS NOT NULL ORDER BY n});
my @rules = map {
	my $text = pack('H*', $_);
	utf8::decode($text);
	{
		method => 'POST',
		path => '^/jobs$',
		status => 201,
		headers => { 'Content-Type' => 'application/json' },
		body => qq({"id": 1, "x": $text}),
		times => 1
	}
} @bodies;
mock_faults(JSON::PP->new->ascii->canonical->encode(\@rules));

# Call once per input, in the same order, and compare.
my $result = $node->safe_psql(
	'postgres', q{
CREATE FUNCTION compare_all(OUT compared int, OUT differ text)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	built jsonb;
	parsed jsonb;
BEGIN
	compared := 0;
	differ := '';
	FOR r IN SELECT n, body FROM corpus
			  WHERE jsonb_or_null(body) IS NOT NULL ORDER BY n
	LOOP
		built := xplenty_run_job(52, 434);
		parsed := ('{"id": 1, "x": ' || r.body || '}')::jsonb;
		IF NOT same_bytes(built, parsed) OR built::text <> parsed::text THEN
			differ := differ || ' ' || r.n;
		END IF;
		compared := compared + 1;
	END LOOP;
END $$;
SELECT compared || '|' || differ FROM compare_all();
});
my ($compared, $differ) = split /\|/, $result, 2;
is($compared, $taken, 'every input taken was compared');
is($differ, '', 'the built jsonb is jsonb_in\'s, byte for byte');

done_testing();
