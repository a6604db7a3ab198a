-- wrk script: PUT /v1/data/products/<key> with a fresh key per request (no two requests contend
-- for one key, so every transaction can commit), body {"name": ..., "price": ...}.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
  table.insert(threads, thread)
end

function init(args)
  prefix = os.getenv("KEY_PREFIX") or "/v1/data/products/"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local key = "t" .. id .. "-" .. counter
  local body = '{"name":"bench ' .. key .. '","price":' .. (counter % 1000) .. '}'
  return wrk.format("PUT", prefix .. key, nil, body)
end
