-- ARGV: state, error, ttl_s, idem_ttl_s -> 1 if this call ended the run
return finish_run(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
