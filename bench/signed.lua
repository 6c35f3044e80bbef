-- wrk script: POST pre-signed Standard Webhooks requests, each webhook-id once. The file (argv[1]) holds one
-- request per line: id, timestamp, signature, body separated by tabs; thread k of n takes lines k, k+n, ...
local threads = {}
local counter = 0

function setup(thread)
  thread:set("k", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  n = tonumber(args[2])
  reqs = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % n == k then
      local id, ts, sig, body = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)\t(.+)")
      table.insert(reqs, wrk.format("POST", wrk.path, {["Content-Type"] = "application/json",
        ["webhook-id"] = id, ["webhook-timestamp"] = ts, ["webhook-signature"] = sig}, body))
    end
    i = i + 1
  end
  pos = 0
end

function request()
  pos = pos + 1
  if pos > #reqs then pos = 1 end  -- past the end a webhook-id repeats: sized so that it does not happen
  return reqs[pos]
end
