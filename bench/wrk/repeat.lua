-- One request repeated for the whole run. args: <requests file> (first line used, same format
-- as requests.lua). Reports each status's count to stdout at the end.
local req, counts = nil, {}

init = function(args)
  for line in io.lines(args[1]) do
    local path, token, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {["Content-Type"] = "application/json"}
    if token ~= "" then headers["Authorization"] = "Bearer " .. token end
    req = wrk.format("POST", path, headers, body)
    break
  end
end

request = function() return req end
