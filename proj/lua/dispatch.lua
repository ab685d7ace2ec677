-- ARGV: step... -> the steps this call claimed for dispatch (each is claimed once per run)
if not is_active(redis.call('HGET', run, 'state')) then return {} end
local at = now()
local claimed = {}
for i = 1, #ARGV do
  if redis.call('SADD', dispatched, ARGV[i]) == 1 then
    redis.call('HSET', steps, ARGV[i] .. '.dispatched_at', at, ARGV[i] .. '.state', 'dispatched')
    table.insert(claimed, ARGV[i])
  end
end
if #claimed > 0 then touch(at) end
return claimed
