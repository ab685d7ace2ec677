-- A validated step's low-confidence output: kept as its candidate (not its result) for the
-- validator; the step waits in 'validating'.
-- KEYS: base..., claim   ARGV: step, result_json, then step metadata field/value pairs
-- -> the round (1, 2, ...) or 0 if the step may not hold a candidate now
local claim, step = KEYS[14], ARGV[1]
if not may('hold_candidate', step, step_state(step)) then return 0 end
local round_no = tonumber(redis.call('HGET', steps, step .. '.round') or '1')
local fields = {step .. '.candidate', ARGV[2], step .. '.state', 'validating', step .. '.round', round_no}
for i = 3, #ARGV, 2 do
  table.insert(fields, step .. '.' .. ARGV[i])
  table.insert(fields, ARGV[i + 1])
end
redis.call('HSET', steps, unpack(fields))
redis.call('DEL', claim)
redis.call('XADD', events, '*', 'type', 'validation_requested', 'step', step, 'round', tostring(round_no),
  'at', now())
return round_no
