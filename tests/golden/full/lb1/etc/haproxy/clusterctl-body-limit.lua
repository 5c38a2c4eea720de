-- Managed by clusterctl (cluster shop, front end lb1); edits here are overwritten.
--
-- max_body for request bodies of any framing. The config refuses a declared Content-Length
-- over the limit before anything is sent; a chunked body (or an HTTP/2 one without a length)
-- is only known as it streams past, bigger than any buffer HAProxy holds. This filter counts
-- its bytes and, past the limit, stops the transaction: the server never gets the whole
-- body, and the client gets a 413 (the frontend's http-after-response turns HAProxy's 400
-- into 413 when txn.clusterctl_body_too_large is set).

local BodyLimit = { id = "clusterctl-body-limit", flags = filter.FLT_CFG_FL_HTX }

function BodyLimit:new()
    return setmetatable({ seen = 0, max = self.max }, { __index = self })
end

function BodyLimit:start_analyze(txn, chn)
    if not chn:is_resp() then
        filter.register_data_filter(self, chn)
    end
    return filter.CONTINUE
end

function BodyLimit:http_headers(txn, msg)
    -- A declared length was already checked: let that body pass at full speed. A request
    -- that is all headers (a WebSocket's upgrade among them) has no body to count: a filter
    -- left on it would count the WebSocket's messages and keep `timeout tunnel` from applying.
    if msg:is_resp() then
        return filter.CONTINUE
    end
    local h = msg:get_headers()
    if h["content-length"] ~= nil or msg:eom() or (h["upgrade"] ~= nil and h["transfer-encoding"] == nil) then
        filter.unregister_data_filter(self, txn.req)
    end
    return filter.CONTINUE
end

function BodyLimit:http_payload(txn, msg)
    local n = msg:input()
    -- input() also counts the end-of-message block; only the body's own bytes count.
    local body = msg:body(0, n)
    self.seen = self.seen + (body and #body or 0)
    if self.seen > self.max then
        txn:set_var("txn.clusterctl_body_too_large", true)
        -- The only way a Lua filter can abort the stream in HAProxy 2.6.
        error("request body over max_body (" .. self.max .. " bytes): refused with 413")
    end
    return n
end

core.register_filter("clusterctl-body-limit", BodyLimit, function(flt, args)
    flt.max = tonumber(args[1])
    return flt
end)
