-- ----------------------------------------------
-- Lexical features of a domain label for the DGA model.
-- The same computation as features() in examples/dns/model/train_dga.py, which
-- trained the coefficients: keep the two in step.
-- ----------------------------------------------
local text = require 'text'
local M = {}

-- features look at bytes (string.byte), not one-character strings (string.sub),
-- so the loops below make no strings and LuaJIT compiles them
local byte = string.byte
local CONSONANTS = {}
for c in string.gmatch("bcdfghjklmnpqrstvwxz", ".") do CONSONANTS[byte(c)] = true end
local VOWELS = {}
for c in string.gmatch("aeiou", ".") do VOWELS[byte(c)] = true end
-- a bigram as the number 256 * first byte + second byte
local COMMON_BIGRAMS = {}
for b in string.gmatch([[
th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co
me de hi ri ro ic ne ea ra ce li ch ll be ma si om ur ca el ta la ns di fo ho pe ec pr no ct us
ac ot il tr ly nc et ut ss so rs un lo wa ge ie wh ee wi em ad ol rt po we na ul ni ts mo ow pa
im mi ai sh ir su id os iv ia am fi ci vi pl ig tu ev ld ry mp fe bl ab gh ty op wo sa ay ex ke
fr oo av ag if ap gr od bo sp rd do uc bu ei ov by rm ep tt oc fa ef cu rn sc gi da yo cr cl du
ga qu ue ff ba ey ls va um pp ua up lu go ht ru ug ds lt pi rc rr eg au ck ew mu br bi pt ak pu
ui rg ib tl ny ki rk ys ob mm fu ph og ms ye ud mb ip ub oi rl gu dr hr cc tw ft wn nu af hu nn
eo vo rv nf xp gn sm fl iz ok nl my gl aw ju oa eq sy sl ps jo lf nv je nk kn gs dy hy ze ks xt
bs ik dd cy rp sk xi oe oy ws lv dl rf eu dg wr xa yi nm eb rb tm xc eh tc gy ja hn yp za gg ym
sw bj lm cs ii ix xe oh lk dv lp ax ox uf dm iu sf bt ka yt ek pm ya gt wl rh yl hs ah yc yn rw
hm lw hl ae zi az lc py aj iq nj bb nh uo kl lb wy ez
]], "%S+") do COMMON_BIGRAMS[byte(b, 1) * 256 + byte(b, 2)] = true end

M.NAMES = { "length", "entropy", "digits", "vowels", "consonant_run", "distinct", "bigrams", "hyphen" }

function M.features(label)
    local n = #label
    if n == 0 then return { 0, 0, 0, 0, 0, 0, 0, 0 } end
    local digits, letters, vowels, run, best, distinct, seen = 0, 0, 0, 0, 0, 0, {}
    for i = 1, n do
        local c = byte(label, i)
        if not seen[c] then seen[c] = true; distinct = distinct + 1 end
        if c >= 48 and c <= 57 then digits = digits + 1 end       -- 0-9
        if c >= 97 and c <= 122 then letters = letters + 1 end    -- a-z
        if VOWELS[c] then vowels = vowels + 1 end
        if CONSONANTS[c] then
            run = run + 1
            if run > best then best = run end
        else
            run = 0
        end
    end
    local common = 0
    for i = 1, n - 1 do
        if COMMON_BIGRAMS[byte(label, i) * 256 + byte(label, i + 1)] then common = common + 1 end
    end
    return {
        n,
        text.entropy(label),
        digits / n,
        letters > 0 and vowels / letters or 0,
        best / n,
        distinct / n,
        n > 1 and common / (n - 1) or 0,
        string.find(label, "-", 1, true) and 1 or 0,
    }
end

return M
