-- Managed by clusterctl (cluster three-kinds, front end lb-apache); edits here are overwritten.
--
-- LimitRequestBody for proxied requests. Apache's HTTP input filter applies the limit to any
-- body, chunked or not, but only to a request that is not marked as proxied when it first
-- reads the body, and mod_rewrite's [P] marks it before that. This input filter sits above
-- it: it clears the mark for that first read (the HTTP filter then takes the limit and
-- answers 413 past it) and puts it back before any byte reaches mod_proxy.

local PROXYREQ = { PROXYREQ_NONE = 0, PROXYREQ_PROXY = 1, PROXYREQ_REVERSE = 2, PROXYREQ_RESPONSE = 3 }

function limit_body(r)
    local proxyreq = PROXYREQ[r.proxyreq] or PROXYREQ.PROXYREQ_REVERSE
    r.proxyreq = PROXYREQ.PROXYREQ_NONE
    coroutine.yield()
    r.proxyreq = proxyreq
    while bucket do
        coroutine.yield(bucket)
    end
end
