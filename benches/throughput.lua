-- wrk script for benches/straks.py: a fresh SF1590_A delivery per request (a new LeveranceId and new BilagIds),
-- each answer checked for "Accepteret" and no "Afvist". Set by the caller through the environment:
--   FKOEKO_BILAG   finansbilag per delivery (of two posteringer each)
--   FKOEKO_DELAY   milliseconds each connection waits between its calls (0: as fast as answered)
--   FKOEKO_SENDER, FKOEKO_AUTHORITY, FKOEKO_TODAY
local threads = {}
local next_id = 1

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local bilag = tonumber(os.getenv("FKOEKO_BILAG") or "1")
local pause = tonumber(os.getenv("FKOEKO_DELAY") or "0")
local sender = os.getenv("FKOEKO_SENDER")
local authority = os.getenv("FKOEKO_AUTHORITY")
local today = os.getenv("FKOEKO_TODAY")
local run = os.getenv("FKOEKO_RUN") or "0"
local sent = 0
bad = 0
sample = ""

local function one_bilag(n)
   local postings = {}
   for i, side in ipairs({ { "D", "5.57.72", "1", "5.2" }, { "K", "9.51.01", "0", "9.5" } }) do
      postings[i] = "<Postering><PosteringId>" .. i .. "</PosteringId><Beloeb>1250.50</Beloeb><DebetKredit>" .. side[1]
         .. "</DebetKredit><Posteringsdato>" .. today .. "</Posteringsdato><Posteringstekst>Kontanthjælp</Posteringstekst>"
         .. "<Kontering><Funktion>" .. side[2] .. "</Funktion><Dranst>" .. side[3] .. "</Dranst><Art>" .. side[4]
         .. "</Art></Kontering></Postering>"
   end
   return "<Finansbilag><BilagId>W" .. run .. "-" .. id .. "-" .. sent .. "-" .. n .. "</BilagId><Bilagsdato>" .. today
      .. "</Bilagsdato>" .. table.concat(postings) .. "</Finansbilag>"
end

function request()
   sent = sent + 1
   -- Unique per run, thread and call; any hex digits make a UUID the schema takes.
   local leverance = string.format("%08x-%04x-4000-8000-%012x", tonumber(run), id, sent)
   local parts = {}
   for n = 1, bilag do
      parts[n] = one_bilag(n)
   end
   local body = '<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
      .. '<soap:Body><ModtagFinansbilag xmlns="urn:fkoeko:sf1590a:v1"><LeveranceId>' .. leverance .. "</LeveranceId>"
      .. "<AfsenderSystem>" .. sender .. "</AfsenderSystem><Myndighed>" .. authority .. "</Myndighed><Dannet>" .. today
      .. "T02:00:00+01:00</Dannet>" .. table.concat(parts) .. "</ModtagFinansbilag></soap:Body></soap:Envelope>"
   return wrk.format("POST", "/sf1590a", { ["Content-Type"] = "text/xml; charset=utf-8" }, body)
end

if pause > 0 then
   function delay()
      return pause
   end
end

function response(status, headers, body)
   if status ~= 200 or not body:find("Accepteret", 1, true) or body:find("Afvist", 1, true) then
      bad = bad + 1
      if sample == "" then
         sample = status .. " " .. body:sub(1, 300)
      end
   end
end

function done(summary, latency, requests)
   local wrong, sample_text = 0, ""
   for _, thread in ipairs(threads) do
      wrong = wrong + thread:get("bad")
      if sample_text == "" then
         sample_text = thread:get("sample")
      end
   end
   io.write(string.format("RESULT requests=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d bad=%d\n",
      summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
      + summary.errors.status, wrong))
   if sample_text ~= "" then
      io.write("SAMPLE " .. sample_text:gsub("\n", " ") .. "\n")
   end
end
