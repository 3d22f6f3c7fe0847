"""Questions a reader might ask about the bundled article, each with words its answer passage must contain.

Written in a reader's words, not copied from the article, so they test meaning, not string matching.
"""

QUESTIONS: list[tuple[str, str]] = [
    ("Which treaty has Pakistan not joined?", "not a signatory to the NPT"),
    (
        "Who were the two presidents that talked privately about Pakistan?",
        "Vladimir Putin and then U.S. President George W. Bush",
    ),
    ("How long ago did the leaders have this conversation?", "More than twenty years ago"),
    ("What was Putin worried could happen with Pakistan's nuclear materials?", "accessed by non-state actors"),
    ("Which country was Pakistan's weapons program a response to?", "vis-à-vis India"),
    ("What terrorist attack happened shortly before the talks?", "9/11 attacks"),
    ("How were relations between Washington and Moscow at that time?", "cautiously optimistic"),
    ("Why has America backed Pakistan in the past?", "counterbalance to India"),
    ("What does Russia want in the region?", "desire to maintain stability"),
    ("How did the world respond when the talks happened?", "primarily subdued"),
    (
        "Which organizations are still shaped by the concerns the two leaders raised?",
        "International Atomic Energy Agency",
    ),
    ("What do specialists recommend doing about the problem?", "Enhanced intelligence sharing"),
    ("Which groups does Pakistan have ties with that worry other countries?", "militant groups"),
    ("What makes the danger of weapons spreading worse today?", "technological advancements"),
    ("Is the topic still being discussed lately?", "intensified once again"),
    ("When did the push to stop nuclear weapons spreading become urgent?", "early 2000s"),
    ("Did the two leaders always agree on how to handle South Asia?", "sometimes diverged"),
    ("What did intelligence officials think about the risks back then?", "alert to the potential risks"),
    ("What did campaigners against proliferation ask for?", "increased vigilance and cooperation"),
    (
        "What will matter for stability in the future?",
        "How the international community addresses Pakistan’s nuclear capabilities",
    ),
    ("What lesson about handling security problems does the exchange teach?", "importance of diplomacy and dialogue"),
    (
        "What was the United States and Russia cooperating against after the Cold War?",
        "terrorism and weapons of mass destruction",
    ),
    ("Why is Pakistan's arsenal outside international controls?", "outside the formal international framework"),
    ("Was the exchange between the leaders public?", "discreet exchange"),
]
