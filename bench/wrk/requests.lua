-- Sends a fixed list of requests, each once (wrk itself only knows durations). When the last
-- answer is in it writes the status counts; the caller watches for that file and stops wrk.
-- args: <requests file> <counts file>. Each line of the requests file is
-- "<path>\t<bearer token or empty>\t<body>"; run with -t1 so one Lua state sees every response.
local reqs, sent, answered, counts, counts_file = {}, 0, 0, {}, nil

init = function(args)
  counts_file = args[2]
  for line in io.lines(args[1]) do
    local path, token, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {["Content-Type"] = "application/json"}
    if token ~= "" then headers["Authorization"] = "Bearer " .. token end
    reqs[#reqs + 1] = wrk.format("POST", path, headers, body)
  end
end

local primed = false

request = function()
  -- wrk calls request() once per thread before connecting and throws that one away.
  if not primed then
    primed = true
    return wrk.format("GET", "/bench-drain")
  end
  sent = sent + 1
  if sent <= #reqs then return reqs[sent] end
  -- Connections still open after the list is sent ask for a missing page (cheap on both
  -- servers), after a pause (delay below), until the caller stops wrk; 404s are not counted.
  return wrk.format("GET", "/bench-drain")
end

delay = function()
  if sent >= #reqs then return 1000 end
  return 0
end

response = function(status, headers, body)
  if status == 404 then return end  -- a drain answer: the bench never books a missing slot
  answered = answered + 1
  counts[status] = (counts[status] or 0) + 1
  if answered == #reqs then
    local f = io.open(counts_file .. ".part", "w")
    for s, n in pairs(counts) do f:write(s, " ", n, "\n") end
    f:close()
    os.rename(counts_file .. ".part", counts_file)  -- the caller sees it whole or not at all
  end
end
