-- A run's model spend against its budget (proj/budget.py): counted in the run's record, so
-- every worker adds to one set of counters. No prelude: it touches the run, its event log and
-- the metrics hash only.
-- KEYS: run, events, metrics
-- ARGV: 'reserve', step, estimated cost, estimated tokens
--         -> {'none'} (no budget) | {'ok'} | {'refused', reason, first ('1': this refusal is the
--            run's first since its limits were set, so its caller parks the budget approval)}
--       'settle', step, estimated cost, estimated tokens, cost, tokens   -> {'ok'}
--       'raise', budget_json, actor   -> {'ok'} | {'none'}
local run, events, metrics = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local raw = redis.call('HMGET', run, 'budget', 'created_at', 'spend_cost', 'spend_tokens', 'spend_calls',
  'spend_reserved_cost', 'spend_reserved_tokens', 'spend_warned', 'admitted_at')
if not raw[1] then return {'none'} end
local function num(value) return tonumber(value) or 0 end
local t = redis.call('TIME')
local at = string.format('%d.%06d', t[1], t[2])
local budget = cjson.decode(raw[1])
local spent_cost, spent_tokens, calls = num(raw[3]), num(raw[4]), num(raw[5])
local reserved_cost, reserved_tokens = num(raw[6]), num(raw[7])

if op == 'raise' then
  redis.call('HSET', run, 'budget', ARGV[2])
  -- The new limits get their own warning, and calls may start again.
  redis.call('HDEL', run, 'spend_warned', 'spend_exceeded')
  redis.call('XADD', events, '*', 'type', 'budget_raised', 'actor', ARGV[3], 'budget', ARGV[2], 'at', at)
  return {'ok'}
end

local step, est_cost, est_tokens = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if op == 'reserve' then
  local reason
  -- Wall time counts from admission for a run that waited in an admission queue.
  local elapsed = tonumber(at) - num(raw[9] or raw[2])
  if budget.max_wall_s and elapsed > budget.max_wall_s then
    reason = string.format('%.1fs of wall time passed (limit %gs)', elapsed, budget.max_wall_s)
  elseif budget.max_model_calls and calls + 1 > budget.max_model_calls then
    reason = string.format('%d model calls made (limit %d)', calls, budget.max_model_calls)
  elseif budget.max_cost_usd and spent_cost + reserved_cost + est_cost > budget.max_cost_usd then
    reason = string.format('$%.6f spent and $%.6f in flight; the next call may cost $%.6f (limit $%.6f)',
      spent_cost, reserved_cost, est_cost, budget.max_cost_usd)
  elseif budget.max_tokens and spent_tokens + reserved_tokens + est_tokens > budget.max_tokens then
    reason = string.format('%d tokens spent and %d in flight; the next call may use %d (limit %d)',
      spent_tokens, reserved_tokens, est_tokens, budget.max_tokens)
  end
  if reason then
    local first = redis.call('HSETNX', run, 'spend_exceeded', reason)
    if first == 1 then
      redis.call('XADD', events, '*', 'type', 'budget_exceeded', 'step', step, 'reason', reason, 'at', at)
      redis.call('HINCRBYFLOAT', metrics, 'budget_total|exceeded', 1)
    end
    return {'refused', reason, tostring(first)}
  end
  redis.call('HINCRBY', run, 'spend_calls', 1)
  redis.call('HINCRBY', run, 'spend_in_flight', 1)
  redis.call('HINCRBYFLOAT', run, 'spend_reserved_cost', est_cost)
  redis.call('HINCRBY', run, 'spend_reserved_tokens', est_tokens)
  return {'ok'}
end

-- settle: the call is over; its estimate gives way to what it cost.
redis.call('HINCRBY', run, 'spend_in_flight', -1)
redis.call('HINCRBYFLOAT', run, 'spend_reserved_cost', -est_cost)
redis.call('HINCRBY', run, 'spend_reserved_tokens', -est_tokens)
spent_cost = tonumber(redis.call('HINCRBYFLOAT', run, 'spend_cost', ARGV[5]))
spent_tokens = redis.call('HINCRBY', run, 'spend_tokens', ARGV[6])
if raw[8] then return {'ok'} end
local warn
local soft = budget.soft_limit or 0.8
if budget.max_cost_usd and spent_cost >= soft * budget.max_cost_usd then
  warn = string.format('$%.6f of $%.6f spent', spent_cost, budget.max_cost_usd)
elseif budget.max_tokens and spent_tokens >= soft * budget.max_tokens then
  warn = string.format('%d of %d tokens spent', spent_tokens, budget.max_tokens)
elseif budget.max_model_calls and calls >= soft * budget.max_model_calls then
  warn = string.format('%d of %d model calls made', calls, budget.max_model_calls)
end
if warn and redis.call('HSETNX', run, 'spend_warned', '1') == 1 then
  redis.call('XADD', events, '*', 'type', 'budget_warning', 'step', step, 'spent', warn, 'at', at)
  redis.call('HINCRBYFLOAT', metrics, 'budget_total|warning', 1)
end
return {'ok'}
