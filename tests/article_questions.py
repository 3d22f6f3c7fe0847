"""Questions a reader might ask about the bundled article: each with the words of its answer, or none.

Written in a reader's words, not copied from the article, so they test meaning, not string matching.
Each answer's words occur once in the article, inside the sentence that answers (a list counts as part
of the sentence that leads into it); where several sentences answer, each is given. The last questions
are ones the article cannot answer: qa should say so rather than offer its best guess as the answer.
"""

from typing import NamedTuple


class ReaderQuestion(NamedTuple):
    question: str
    answers: tuple[str, ...]
    """Words of the answer, one string per sentence that answers; none for a question the article cannot answer."""


ANSWERABLE: list[ReaderQuestion] = [
    ReaderQuestion("Which treaty has Pakistan not joined?", ("not a signatory to the NPT",)),
    ReaderQuestion(
        "Who were the two presidents that talked privately about Pakistan?",
        (
            "Vladimir Putin and then U.S. President George W. Bush",
            "Russian President Vladimir Putin and US President George W. Bush",
        ),
    ),
    ReaderQuestion(
        "How long ago did the leaders have this conversation?", ("More than twenty years ago", "Two decades ago")
    ),
    ReaderQuestion(
        "What was Putin worried could happen with Pakistan's nuclear materials?", ("accessed by non-state actors",)
    ),
    ReaderQuestion("Which country was Pakistan's weapons program a response to?", ("vis-à-vis India",)),
    ReaderQuestion("What terrorist attack happened shortly before the talks?", ("9/11 attacks",)),
    ReaderQuestion("How were relations between Washington and Moscow at that time?", ("cautiously optimistic",)),
    ReaderQuestion("Why has America backed Pakistan in the past?", ("counterbalance to India",)),
    ReaderQuestion("What does Russia want in the region?", ("desire to maintain stability",)),
    ReaderQuestion("How did the world respond when the talks happened?", ("primarily subdued",)),
    ReaderQuestion(
        "Which organizations are still shaped by the concerns the two leaders raised?",
        ("International Atomic Energy Agency",),
    ),
    ReaderQuestion("What do specialists recommend doing about the problem?", ("Enhanced intelligence sharing",)),
    ReaderQuestion("Which groups does Pakistan have ties with that worry other countries?", ("militant groups",)),
    ReaderQuestion("What makes the danger of weapons spreading worse today?", ("technological advancements",)),
    ReaderQuestion(
        "Is the topic still being discussed lately?",
        ("intensified once again", "still resonates in global security conversations today"),
    ),
    ReaderQuestion("When did the push to stop nuclear weapons spreading become urgent?", ("early 2000s",)),
    ReaderQuestion("Did the two leaders always agree on how to handle South Asia?", ("sometimes diverged",)),
    ReaderQuestion(
        "What did intelligence officials think about the risks back then?", ("alert to the potential risks",)
    ),
    ReaderQuestion("What did campaigners against proliferation ask for?", ("increased vigilance and cooperation",)),
    ReaderQuestion(
        "What will matter for stability in the future?",
        ("How the international community addresses Pakistan’s nuclear capabilities",),
    ),
    ReaderQuestion(
        "What lesson about handling security problems does the exchange teach?",
        ("importance of diplomacy and dialogue",),
    ),
    ReaderQuestion(
        "What was the United States and Russia cooperating against after the Cold War?",
        ("terrorism and weapons of mass destruction",),
    ),
    ReaderQuestion(
        "Why is Pakistan's arsenal outside international controls?", ("outside the formal international framework",)
    ),
    ReaderQuestion("Was the exchange between the leaders public?", ("discreet exchange",)),
    ReaderQuestion(
        "Which part of the world was unstable at the start of the century?", ("persistent instability in South Asia",)
    ),
    ReaderQuestion(
        "What agreement is meant to keep countries from getting nuclear arms?",
        ("Nuclear Non-Proliferation Treaty (NPT)",),
    ),
    ReaderQuestion("How far did Putin think the damage could spread?", ("beyond regional boundaries",)),
    ReaderQuestion(
        "Apart from falling into the wrong hands, how else could Pakistan's weapons cause harm?",
        ("escalate regional conflicts",),
    ),
    ReaderQuestion(
        "What is the problem of weapons spreading in South Asia tied to?",
        ("broader geopolitical and economic contexts",),
    ),
    ReaderQuestion("What does Washington push for while it supports Pakistan?", ("advocating for non-proliferation",)),
    ReaderQuestion("What do countries find hard to do about it?", ("crafting effective policies",)),
    ReaderQuestion(
        "What got the world's attention instead of the talks?", ("broader U.S.-Russia cooperation against terrorism",)
    ),
    ReaderQuestion("Which nuclear watchdog is named?", ("International Atomic Energy Agency (IAEA)",)),
    ReaderQuestion(
        "What kind of competition between countries is growing now?", ("heightened rivalry between major powers",)
    ),
    ReaderQuestion(
        "What three steps do specialists call for?", ("Strengthening of international non-proliferation mechanisms",)
    ),
    ReaderQuestion(
        "What will keep shaping security policy in the coming years?",
        ("interplay between strategic interests and non-proliferation objectives",),
    ),
    ReaderQuestion("What did both presidents agree mattered?", ("importance of addressing nuclear threats",)),
    ReaderQuestion("What is being done about the risks nowadays?", ("renewed diplomatic efforts",)),
    ReaderQuestion(
        "Who was president of Russia during the talks?",
        ("Russian President Vladimir Putin and then", "Russian President Vladimir Putin raised"),
    ),
    ReaderQuestion(
        "What alarmed other countries about Pakistan's friends?",
        ("strategic relationship with various militant groups",),
    ),
]
"""Questions the article answers."""

UNANSWERABLE: list[ReaderQuestion] = [
    ReaderQuestion("How many nuclear warheads does Pakistan have?", ()),
    ReaderQuestion("Where did Putin and Bush meet?", ()),
    ReaderQuestion("What did Bush reply to Putin?", ()),
    ReaderQuestion("In which year did Pakistan first test a nuclear bomb?", ()),
    ReaderQuestion("Who leads Pakistan today?", ()),
    ReaderQuestion("What sanctions did the United Nations impose on Pakistan?", ()),
]
"""Questions the article does not answer: what it says is near them, but not the answer."""

OFF_TOPIC: list[ReaderQuestion] = [
    ReaderQuestion("Who won the 2018 football World Cup?", ()),
    ReaderQuestion("What is the boiling point of water at sea level?", ()),
    ReaderQuestion("How do I bake sourdough bread?", ()),
    ReaderQuestion("Which river passes through four capital cities?", ()),
    ReaderQuestion("When was the Eiffel Tower built?", ()),
    ReaderQuestion("How many moons does Jupiter have?", ()),
]
"""Questions about something else entirely: what "no answer here" is for."""

QUESTIONS = ANSWERABLE + UNANSWERABLE
