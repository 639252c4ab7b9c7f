"""Surveys by SMS: who is asked what, when, and whether they may be texted at all. Pure: no Flask, no session.

After help ends, intake asks a short questionnaire by SMS, one question at a time, each answered with a number from
0 to 10: a carer after support, a service user after a task, a bereaved person some weeks after bereavement support
(the community's `bereavement_survey_weeks`). Each survey asks the ONS personal wellbeing questions (ONS4: Office
for National Statistics, Crown copyright, reused under the Open Government Licence v3.0, which allows this use)
and then the community's own questions for that kind of respondent. SWEMWBS and the Carer Experience Scale are not
shipped: both need their owners' registration or permission.

Nobody is texted without their `sms_contact` consent, nor once their death is recorded; both are checked when each
question is sent, not only when the survey was made. Notify holds every question for the quiet hours.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from shared.clock import utcnow
from shared.contracts.intake import RESPONDENTS, SurveyQuestion
from shared.taxonomy import KINDS

RESPONDENT_LABELS = {"carer": "Carers, after support", "service_user": "Service users, after a task",
                     "bereaved": "Bereaved people, after bereavement support"}
SCALE = " Reply 0 (not at all) to 10 (completely)."
SCALE_FR = " Répondez de 0 (pas du tout) à 10 (complètement)."
# ONS4: the Office for National Statistics' four personal wellbeing questions (Open Government Licence v3.0); the
# French is this project's own rendering.
ONS4 = (
    {"id": "ons4_life_satisfaction", "en": "Overall, how satisfied are you with your life nowadays?",
     "fr": "Dans l'ensemble, dans quelle mesure êtes-vous satisfait(e) de votre vie ces temps-ci ?"},
    {"id": "ons4_worthwhile", "en": "Overall, to what extent do you feel that the things you do in your life are "
                                    "worthwhile?",
     "fr": "Dans l'ensemble, dans quelle mesure avez-vous le sentiment que ce que vous faites dans votre vie en "
           "vaut la peine ?"},
    {"id": "ons4_happiness", "en": "Overall, how happy did you feel yesterday?",
     "fr": "Dans l'ensemble, à quel point vous êtes-vous senti(e) heureux(se) hier ?"},
    {"id": "ons4_anxiety", "en": "Overall, how anxious did you feel yesterday?",
     "fr": "Dans l'ensemble, à quel point vous êtes-vous senti(e) anxieux(se) hier ?"},
)
INTRO = {"en": "A short survey about the support you had ({n} questions). Reply STOP to end it. ",
         "fr": "Un court sondage sur le soutien reçu ({n} questions). Répondez STOP pour l'arrêter. "}
BEREAVEMENT_SURVEY_WEEKS = 6  # a community's `bereavement_survey_weeks` by default
SURVEY_REMINDER_HOURS = 48  # a community's `survey_reminder_hours` by default: one reminder, this long after
NOT_SENT = {"no_consent": "no consent to contact by SMS", "died": "their death was recorded",
            "no_phone": "no phone number", "opted_out": "they replied STOP"}


class SurveyError(Exception):
    """A question a community cannot define as given; `field` names what to change."""

    def __init__(self, message: str, field: str = "text"):
        super().__init__(message)
        self.field = field


class CommunityQuestion:
    """A question a community asks after the ONS4 questions, of one kind of respondent, answered 0 to 10."""

    def __init__(self, *, community: str, respondent: str, text: str, text_fr: str = "", created_by: str,
                 id: uuid.UUID | None = None, created_at: datetime | None = None):
        if respondent not in RESPONDENTS:
            raise SurveyError(f"Choose who is asked: one of {', '.join(RESPONDENTS)}.", "respondent")
        if not 5 <= len(text.strip()) <= 200:
            raise SurveyError("Write the question in 5 to 200 characters (it goes by SMS).", "text")
        if len(text_fr.strip()) > 200:
            raise SurveyError("Write the French question in at most 200 characters.", "text_fr")
        self.id = id or uuid.uuid4()
        self.community, self.respondent = community, respondent
        self.text, self.text_fr = text.strip(), text_fr.strip()
        self.created_by, self.created_at = created_by, created_at or utcnow()
        self.retired_at: datetime | None = None

    @property
    def key(self) -> str:
        """The question as answers are counted: `own_` and its id (no words travel to metrics)."""
        return f"own_{self.id.hex[:12]}"

    def as_asked(self) -> dict[str, str]:
        return {"id": self.key, "en": self.text, "fr": self.text_fr or self.text}


def respondent_for(support_type: str, is_carer: bool) -> str:
    """Who answers after a task of this kind: a bereaved person after bereavement support, a carer after support
    given to them as a carer, otherwise a service user."""
    if KINDS[support_type].category == "bereavement":
        return "bereaved"
    return "carer" if is_carer else "service_user"


class Survey:
    """One person's survey after one request's help: the questions fixed when it was made, how many have been asked,
    and whether it is waiting, asking, done or stopped (with why)."""

    def __init__(self, *, community: str, request_id: uuid.UUID, respondent: str, questions: list[dict[str, str]],
                 due_at: datetime, id: uuid.UUID | None = None):
        self.id = id or uuid.uuid4()
        self.community, self.request_id, self.respondent = community, request_id, respondent
        self.questions = questions
        self.due_at, self.created_at = due_at, utcnow()
        self.status, self.asked, self.ended_reason = "due", 0, ""
        self.phone: str | None = None  # the number it is asking, once it has begun

    @classmethod
    def after(cls, community: str, request_id: uuid.UUID, support_type: str, is_carer: bool, completed_at: datetime,
              own: list[CommunityQuestion], bereavement_weeks: int) -> "Survey":
        """The survey a completed task calls for: ONS4, then the community's own questions for that respondent; due
        now, or `bereavement_weeks` after bereavement support."""
        respondent = respondent_for(support_type, is_carer)
        due = completed_at + timedelta(weeks=bereavement_weeks) if respondent == "bereaved" else completed_at
        questions = [dict(q) for q in ONS4] + [q.as_asked() for q in own if q.respondent == respondent]
        return cls(community=community, request_id=request_id, respondent=respondent, questions=questions,
                   due_at=due)

    @property
    def current(self) -> dict[str, str] | None:
        """The question last sent and not yet answered (None when none is out)."""
        return self.questions[self.asked - 1] if self.status == "asking" and self.asked else None

    def stop(self, why: str) -> bool:
        """End the survey before it is done (NOT_SENT's reasons); True if it was still going."""
        if self.status in ("done", "stopped"):
            return False
        self.status, self.ended_reason = "stopped", NOT_SENT[why]
        return True

    def next_question(self, phone: str, language: str | None, reminder_hours: int) -> SurveyQuestion | None:
        """The next question to send (the first with a few words of introduction), or None when all were answered
        (the survey is then done)."""
        if self.asked >= len(self.questions):
            self.status = "done"
            return None
        question, lang = self.questions[self.asked], "fr" if language == "fr" else "en"
        self.asked += 1
        self.status, self.phone = "asking", phone
        text = (INTRO[lang].format(n=len(self.questions)) if self.asked == 1 else "") + question[lang] + (
            SCALE_FR if lang == "fr" else SCALE)
        return SurveyQuestion(survey_id=self.id, request_id=self.request_id, question_id=question["id"], phone=phone,
                              text=text, community=self.community, language=lang, number=self.asked,
                              of=len(self.questions), reminder_hours=reminder_hours if self.asked == 1 else 0)


def may_text(consented: bool, phone: str | None, died: bool, opted_out: bool = False) -> str | None:
    """Why a survey question may not go to this person now (a NOT_SENT key), or None when it may."""
    if died:
        return "died"
    if not consented:
        return "no_consent"
    if not phone:
        return "no_phone"
    if opted_out:
        return "opted_out"
    return None
