"""The trigger words of :mod:`.context`: negation, uncertainty, history, family and the words that end their
scopes (NegEx-style pre- and post-triggers, Chapman 2001; ConText, Harkema 2009), kept apart from the rules that
apply them."""
from __future__ import annotations

import re

# ------------------------------------------------------------------------------------------ triggers
def _words(*alternatives: str) -> re.Pattern:
    return re.compile(r"(?<![\w/])(?:" + "|".join(alternatives) + r")(?![\w/])")


_NEG_PRE = _words(
    r"no", r"not", r"nor", r"never", r"without", r"w/o", r"denies", r"denied", r"deny", r"denying", r"negative for",
    r"neg for", r"free of", r"free from", r"absence of", r"absent", r"nil", r"no evidence of", r"no signs? of",
    r"no history of", r"no hx of", r"no h/o", r"no previous", r"no prior", r"no known", r"does not have",
    r"did not have", r"doesn'?t have", r"didn'?t have", r"has not had", r"hasn'?t had", r"have not had",
    r"haven'?t had", r"(?:haven|hasn)'?t(?: (?:actually|really|ever|yet|even))? been", r"have not been",
    # "I haven't got a temperature", "she's not got any pain": British "have got" denied
    r"(?:haven|hasn)'?t(?: (?:really|actually|even))? got", r"(?:have|has) not got", r"(?:i'?ve|she'?s|he'?s) not got",
    # "I don't think I've had a temperature": the speaker's own doubtful denial
    r"(?:don'?t|do not|didn'?t|did not) think (?:i'?ve|i have|i'?d|i had|i|she'?s|she has|he'?s|he has|she|he) "
    r"(?:had|got|been|have|has|ever had)",
    r"(?:(?:does|do|did) not|doesn'?t|didn'?t|never) (?:report|complain(?:ed)? of|describe|mention|endorse|notice|"
    r"experience|have any)", r"no reports? of", r"not reported",
    r"has not been", r"don'?t", r"do not",
    r"dont", r"off", r"isn'?t", r"wasn'?t", r"aren'?t", r"weren'?t", r"doesn'?t", r"didn'?t", r"cannot",
    r"can'?t", r"unable to elicit", r"no complaints? of", r"ruled out", r"resolution of",
    r"not associated with", r"no associated", r"neither", r"none", r"nothing to suggest", r"never had",
    r"nkda", r"unlikely to (?:be|have)", r"argues? against", r"no suggestion of")
_NEG_NON = re.compile(r"(?<![\w/])(?:non|un)-?(?=[a-z])")
_NEG_POST = _words(
    r"(?:is |was |were |are |has been |have been |remains? )?(?:negative|absent|not (?:present|seen|elicited|"
    r"found|detected|palpable|felt|present)|unremarkable|nil|ruled out|excluded|denied|not a feature|normal|"
    r"(?:thought |felt |considered |seems? |looks? )?unlikely)")
_UNC_PRE = _words(
    r"possible", r"possibly", r"probable", r"query", r"queried", r"questionable", r"question of", r"\?",
    r"suspected", r"suspect", r"suspicious for", r"suspicion of", r"concern for", r"concerning for",
    r"worried about", r"worry about", r"worried (?:it|this) (?:is|might be|could be)", r"rule out", r"r/o",
    r"to exclude", r"exclude", r"exclusion of", r"may have", r"might have", r"could have", r"may be", r"might be",
    r"could be", r"cannot exclude", r"can'?t exclude", r"cannot rule out", r"can'?t rule out", r"versus", r"vs",
    r"differential(?: diagnosis)?(?: includes?)?", r"consider", r"presumed", r"equivocal", r"doubtful",
    r"wonder(?:s|ing)? (?:if|whether|about)", r"\?\?", r"assess for", r"evaluate for", r"eval for", r"check for",
    r"look(?:ing)? for", r"search for", r"maybe", r"perhaps", r"likely",
    r"(?:not sure|unsure|not certain) (?:if|whether)", r"i think (?:i|it|she|he) (?:might|may|could)",
    r"(?:might|may|could) (?:have|be) (?:got|getting|developing)",
    # an operation or test still to come is not a fact of the patient ("awaiting cholecystectomy")
    r"planned", r"planning", r"awaiting", r"scheduled for", r"booked for", r"listed for", r"waiting list for",
    r"due to have", r"due for",
    # referred for a test or an operation (not "referred for abdominal pain": the complaint that brought them)
    r"referred for(?= (?:an? |the |further |urgent |elective |routine )?(?:\w+ )?(?:scans?|ct|mri|ultrasound|"
    r"endoscopy|ogd|colonoscopy|surgery|operation|biopsy|review|assessment|evaluation|investigations?|imaging|"
    r"removal|repair|\w+ectomy|\w+oscopy|\w+graphy)\b)", r"will have", r"will need", r"candidate for", r"pending")
_UNC_QMARK = re.compile(r"\?\s*(?=[a-z])")
_HIST_PRE = _words(
    r"history of", r"hx of", r"h/o", r"pmh(?:x)?(?: of| includes?)?",
    r"past (?:medical |surgical )?histor(?:y|ies)(?: of)?",
    r"(?:medical|surgical) histor(?:y|ies) (?:was|is|were|are) (?:significant|notable|remarkable) for",
    r"previous(?:ly)?", r"prior", r"status post", r"s/p", r"background of", r"bg of", r"known",
    r"in the past(?! (?:\d|few|several|couple|one|two|three|four|five|six|seven|ten|twelve|24|48|72|day|week|"
    r"month|hour|fortnight|night|evening|morning))", r"long-?standing", r"underwent", r"had undergone",
    r"has undergone", r"treated for",
    r"recovered from", r"was diagnosed with", r"diagnosed with", r"remote", r"resolved", r"former",
    r"(?:\d+|a|one|two|three|four|five|six|seven|eight|nine|ten|twenty|several|many|a few|few|some) "
    r"(?:years?|yrs?|decades?) "
    r"(?:ago|before|earlier|previously|prior)",
    r"(?:\d+|a|one|two|three|four|five|six|seven|eight|nine|ten|twelve|eighteen|twenty|several|many|a few|few|some) "
    r"(?:years?|yrs?|months?|decades?) after", r"in (?:19|20)\d\d", r"as a (?:child|teenager|baby)", r"in childhood",
    r"(?<!-)(?<!year )(?<!years )(?<!yr )(?<!yrs )(?<!y )(?<!y/)old(?! (?:man|woman|lady|gentleman|male|female|patient|"
    r"boy|girl|person|people|age|men|women|gent|chap|fellow|adult))")
_HIST_POST = re.compile(
    r"^\W{0,3}(?:\w+\W+){0,4}?(?:(?:\d+|a|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
    r"twenty|thirty|forty|several|many|few|some|a few|couple of|a couple of)\s+(?:years?|yrs?|decades?)\s+"
    r"(?:ago|before|earlier|previously|prior)|in (?:19|20)\d\d|(?:last|previous) year|as a (?:child|teenager|baby)|"
    r"(?:years|decades|ages) ago|"
    r"when (?:i|he|she) was (?:a (?:child|kid|teenager|baby|boy|girl|student)|young|little|small|\d{1,2}|two|three|"
    r"four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|"
    r"nineteen|twenty)|in the past(?! (?:\d|few|several|couple|one|two|three|four|five|six|seven|ten|twelve|"
    r"day|week|month|hour|fortnight|night|evening|morning))|previously|in childhood|"
    r"(?:which |that )?(?:has |have )?(?:since )?resolved)\b")
_FAMILY_PRE = _words(
    r"family history of", r"fh of", r"fhx? of", r"family hx of", r"family history(?= ?:)", r"fhx?(?= ?:)",
    r"(?:his|her|my|their|one|a|an|two|three|an older|a younger|an elder) "
    r"(?:father|mother|dad|mum|mom|brother|sister|son|daughter|grandmother|grandfather|"
    # the relative is the one with the disease, not a witness of the patient's ("his mother says he has been
    # vomiting", "her husband noticed she had turned yellow"): no verb of telling or seeing, no new subject between
    r"uncle|aunt|parents?|siblings?|cousin)(?: (?!says|said|reports?|reported|tells|told|noticed|notices|thinks|"
    r"thought|feels|felt|mentions?|mentioned|describes|described|explains?|explained|worries|worried|adds|added|"
    r"she|he|i|they|that)\w+){0,2} (?:had|has|died of|died from|with|diagnosed with|"
    r"was diagnosed with|suffered from)",
    r"runs in the family")
_TERMINATORS = _words(
    r"but", r"however", r"though", r"although", r"apart from", r"aside from", r"except(?: for)?", r"whereas", r"yet",
    r"which", r"who", r"presents? with", r"presented with", r"presenting with", r"reports?", r"reported",
    r"complains? of", r"complaining of", r"complained of", r"complaints? of", r"c/o", r"now has", r"now with",
    r"and (?:now|then|has|had|is|was|reports|"
    r"takes|uses|smokes|drinks|complains|describes|presents|developed|she|he|they|there|on|her|his|the|my|i|i'm|i've|"
    r"it|it's|its)",
    r"then", r"since then",
    r"admitted with", r"came in with", r"comes in with", r"today", r"now", r"currently", r"this time",
    r"on examination", r"o/e", r"examination", r"exam", r"bloods", r"blood (?:tests?|results?|work)", r"labs?",
    r"investigations?", r"imaging",
    r"with (?:new|worsening|sudden|severe|acute)", r"developed", r"develops", r"started", r"began", r"she", r"he",
    r"they", r"patient", r"pt")
# A disease diagnosed recently is part of the presentation ("newly diagnosed with diabetes", "was diagnosed with
# diabetes 4 weeks earlier"), not the past: within a year (designed).
_RECENT_SPAN = re.compile(r"(?<![\w])(?:(?:for|over|since) (?:the )?(?:last |past )?"
                          r"(?:\d{1,2}|a|one|two|three|four|five|six|seven|several|a few|few|couple of|a couple of) "
                          r"(?:hours?|hrs?|days?|weeks?)(?![\w])|"
                          r"of (?:\d{1,2}(?:-\d{1,2})?|one|two|three|four|five|six|seven|several|a few) "
                          r"(?:hours?|hrs?|days?|weeks?)'?s?'? (?:duration|evolution))")
_RECENT_BEFORE = re.compile(r"(?:recently|newly|just)(?: (?:been|was|were|being|had been|has been|have been))? $")
_RECENT_AFTER = re.compile(
    r"^(?:\S+ ){1,6}?(?:(?:\d{1,2}|a|one|two|three|four|five|six|seven|eight|nine|ten|eleven|a few|few|several|some|"
    r"a couple of) (?:days?|weeks?|months?)(?: \w+)? (?:ago|earlier|before|previously|prior)|"
    r"(?:last|this) (?:week|month))")


# A span followed by its date in the future ("cholecystectomy planned", "... next month") is not yet a fact.
_FUTURE_POST = re.compile(r"^\W{0,3}(?:(?:is|was|has been|being|now)\s+)?(?:planned|scheduled|booked|pending|awaited|"
                          r"due (?:next|in|on|this)|next (?:week|month|year)|in (?:two|three|four|six|a few|\d+) (?:weeks|months)|"
                          r"(?:on|in) the waiting list)\b")
# The past ends where the text turns to the presentation ("a history of gallstones has sudden chest pain",
# "known cirrhosis is having black stools since yesterday"); these end history scopes only (a negation may run
# over "having": "denies having pain").
_HIST_TERMINATORS = _words(
    r"has", r"have", r"is having", r"having", r"is experiencing", r"experiencing", r"experiences", r"presents?",
    r"presenting", r"presented", r"attends?", r"attended", r"came", r"comes", r"woke(?: up)?", r"wakes(?: up)?",
    r"noticed", r"notices", r"this morning", r"this evening", r"yesterday", r"last night", r"tonight",
    r"since (?:this|last|yesterday|the morning|the evening)", r"(?:over|for|in) the (?:past|last) \w+",
    r"is now", r"is currently", r"gets", r"got", r"getting", r"feels", r"felt", r"is complaining",
    # brought to care: "with a history of hypertension was referred to our department with chest pain"
    r"(?:was |were |is )?(?:referred|admitted|brought|transferred|rushed|sent)(?= (?:to|in|into|by|with|for|from)\b)",
    r"visited", r"arrived", r"consulted")
# History triggers that head a list of past diseases ("a history of diabetes, hypertension and asthma").
_LIST_HISTORY = re.compile(r"history of|hx of|h/o|pmh(?:x)?(?: of| includes?)?|past (?:medical |surgical )?histor(?:y|ies)"
                           r"(?: of)?|(?:medical|surgical) histor(?:y|ies) (?:was|is|were|are) (?:significant|notable|"
                           r"remarkable) for|background of|bg of|family history of|fhx? of|family hx of|fh of")
_NOW_WORDS = re.compile(r"(?<![\w/])(?:today|now|currently|this (?:morning|evening|time|week)|yesterday|tonight|"
                        r"last night|since|for the (?:past|last)|acute(?:ly)?|new|sudden(?:ly)?|on admission)(?![\w/])")
_DENIED_HISTORY = re.compile(r"(?<![\w/])(?:no|denies|denied|deny|denying|without|not have|negative|nil)"
                             r"(?: (?:any|a|significant|relevant|known|prior|previous|past|personal|medical))*\s+$")
_PRESENTED_WITH = re.compile(r"(?<![\w/])(?:present(?:s|ed|ing)|admitted|came|comes|attend(?:s|ed)|"
                             r"referred|complain(?:s|ed|ing))(?: (?:to|at|in) (?:the |our |an |a )?[\w&-]+(?: [\w&-]+)?)?"
                             r" with (?:a |an )?(?:long |recent |short |several )?$")
_LIST_VERB = re.compile(r"(?<![\w/])(?:smokes|smoked|drinks|drank|takes|took|uses|used|lives|works|denies|denied)(?![\w/])")
# Negation words that do not deny what follows ("not only nausea but vomiting", "no improvement in the pain",
# "no relief from antacids"): pseudo-negations in the NegEx sense.
_PSEUDO_NEG = re.compile(r"\s+(only|just|improvement|better|relief|resolution|response|subsiding|settling|improving|"
                         r"resolving|responding|relieved|easing|eased|helped|responsive|"
                         r"change in (?:the |her |his |my )?(?:pain|symptoms)|further (?:improvement|relief))\b")
# A list continues a negation across commas when it is closed by "or"/"nor"/"and" ("no fever, rigors or sweats",
# "denies diarrhoea, dysuria, and vaginal discharge"). After a verb of denial the list runs on without a closer
# ("denied fever, throat pain, chest pain, cough") until an item holds a verb or a turn.
_LIST_CLOSER = re.compile(r"(?<![\w/])(?:or|nor|and)(?![\w/])")
_LIST_CLOSER_START = re.compile(r"\s*(?:or|nor|and)(?![\w/])")
_VERBISH = re.compile(r"(?<![\w/])(?:is|was|has|had|have|are|were|she|he|they|presents?|reports?|complains?|"
                      r"started|began|developed|with|since|for|after)(?![\w/])")
_VERBISH_STRICT = re.compile(r"(?<![\w/])(?:is|was|has|had|have|are|were|she|he|they|i|presents?|presented|reports?|"
                             r"reported|complains?|complained|started|began|developed|admits?|admitted|endorsed?|"
                             r"but|however|although|though|yet|which|who|now|then|since)(?![\w/])")
# Negations that may head a list; "off" ("off her food, vomiting and feverish"), "cannot", "don't" do not.
_LIST_HEAD = re.compile(r"(?:no|not|nor|never|without|w/o|nil|absent|absence of|free of|free from|no evidence of|"
                        r"no signs? of|no known|no associated|not associated with|neither|none|no complaints? of|"
                        r"denies|denied|deny|denying|negative for|neg for|no history of|no hx of|no h/o|no previous|"
                        r"no prior|no reports? of|not reported|(?:(?:does|do|did) not|doesn'?t|didn'?t|never) "
                        r"(?:report|complain(?:ed)? of|describe|mention|endorse|notice|experience|have any)|"
                        r"(?:does|did) not have|doesn'?t have|didn'?t have|has not had|hasn'?t had|have not had|"
                        r"haven'?t had|never had|(?:haven|hasn)'?t got|(?:have|has) not got|"
                        r"(?:i'?ve|she'?s|he'?s) not got)")
_DENIAL = re.compile(r"(?:denies|denied|deny|denying|negative for|neg for|no complaints? of|no history of|no hx of|"
                     r"no h/o|no previous|no prior|no reports? of|(?:did|does|do) not (?:report|complain|describe|"
                     r"mention|endorse|notice|experience|have any)|(?:didn|doesn)'?t (?:report|complain|describe|"
                     r"mention|endorse|notice|experience|have any)|never (?:report|complain))")


# A negation that denies a noun phrase ends at the verb of its clause ("a man on no anticoagulation has sudden
# abdominal pain", "takes no medication and is vomiting"): what follows the verb is what the clause asserts. The
# verb ends the scope only after a word that can be the denied thing, so that "not had any vomiting", "don't
# really have pain" and "no, has not vomited" stay denied (designed).
_CLAUSE_VERB = re.compile(r"(?<![\w/'])(?:has|have|had|is|was|are|were|gets|got|feels|felt|presents?|presenting|"
                          r"presented|came|comes|attends?|attended|noticed|notices|woke|wakes|is having|has had|"
                          r"developed|develops|complains|complained|reports|reported|was admitted|admitted|calls|called|rings|rang|"
                          r"phones|phoned|goes|went|visits|visited|sees|saw|seeks|sought|describes|described|says|said|"
                          r"arrives|arrived|brought|collapsed|collapses|experiences|experienced|suffers|suffered|"
                          r"returns|returned|consults|consulted|contacts|contacted|seen|started|starts|began|begins)(?![\w/'])")
_NOT_A_NOUN = frozenset({
    "any", "really", "actually", "ever", "yet", "even", "always", "usually", "recently", "previously", "currently",
    "been", "further", "more", "other", "significant", "obvious", "real", "much", "that", "which", "one", "it",
    "this", "there", "so", "far", "to", "date", "as", "of", "the", "a", "an", "she", "he", "they", "i", "we",
    "you", "and", "or", "not", "no", "never", "also", "still", "then", "now", "ago", "longer", "change"})


_OFF_END = re.compile(r"\s(?:and|with|plus|but|&)(?![\w/])")
