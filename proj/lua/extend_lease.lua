-- Keep a step's lease while its body runs. KEYS: claim  ARGV: token, lease_ms -> 1 if extended
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
