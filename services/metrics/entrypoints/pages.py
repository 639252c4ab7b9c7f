"""The managers' pages: the dashboard (this period's numbers beside the last, a chart of each over time, and the
table that the CSV download holds) and the one-page report a manager sends to a funder. Counts from 1 to 4 show
as "<5" here as everywhere."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlencode

from flask import Response, redirect, render_template, request
from marshmallow import ValidationError

from services.metrics import domain, service_layer
from services.metrics.domain import (ACTIVITY_LABELS, BREAKDOWNS, EQUITY_KEYS, MEASURES, ORGANISATION_TYPES, PERIODS,
                                     SIDE_BY_SIDE, TOTAL, csv_rows, side_by_side_rows)
from services.metrics.entrypoints.api import MANAGERS, ActivityIn, ActivityQuery, BaselineIn, csv_file, filters_of
from shared import clock, communities, equity
from shared.taxonomy import KINDS
from shared.taxonomy import ORGANISATION_TYPES as ORGANISATION_KINDS
from shared.web import FormErrors, Pages, current_actor, page_requires, service

blp = Pages("dashboard", __name__, description="The managers' dashboard")


def bars(points: list[tuple[str, object]], width: int = 300, height: int = 90) -> dict:
    """An inline SVG bar chart's bars; a suppressed count draws as a hatched stub, labelled "<5"."""
    numbers = [value if isinstance(value, (int, float)) else 0 for _, value in points]
    top = max(numbers + [1])
    step = width / max(len(points), 1)
    out = []
    for n, ((label, value), number) in enumerate(zip(points, numbers)):
        high = 4 if isinstance(value, str) else round((height - 28) * number / top)  # room for the label
        out.append({"x": round(n * step + 4), "y": height - 14 - high, "w": round(step - 8), "h": high,
                    "label": label, "value": value, "hidden": isinstance(value, str)})
    return {"width": width, "height": height, "bars": out}


# The dashboard's tiles, grouped under seed 003's measures in its own words (every measure in one group).
GROUPS = (
    ("Requests for support", ("requests_received", "requests_matched", "match_rate", "requests_unmatched",
                              "requests_cancelled", "requests_signposted", "occurrences_matched",
                              "requests_rematched")),
    ("How quickly help comes", ("hours_to_acceptance_median", "hours_to_acceptance_p90")),
    ("People supported", ("people_reached", "carers_supported", "bereavement_supports", "tasks_completed",
                          "befriending_started", "befriending_ended", "befriending_visits",
                          "deaths_recorded", "bereavement_offered", "bereavement_taken_up")),
    ("Volunteers", ("volunteers_registered", "active_volunteers", "new_volunteers", "volunteers_paused",
                    "volunteers_left", "volunteer_hours", "volunteer_time_value")),
    ("Volunteers' wellbeing", ("wellbeing_prompted", "wellbeing_answered", "wellbeing_talk")),
    ("Activities and education", ("group_activities", "group_attendance", "future_planning_reached",
                                  "education_reached")),
    ("Partnerships", ("active_partners", "providers_adopting")),
    ("Safeguarding", ("concerns_raised", "concerns_closed")),
    ("Carer wellbeing", ("carer_survey_answers",)),
    ("Survey of service users and bereaved people", ("user_survey_answers",)),
)
# Whose survey answers each group's table shows (domain.RESPONDENT_WORDS).
SURVEY_GROUPS = {"Carer wellbeing": ("Carers",),
                 "Survey of service users and bereaved people": ("Service users", "Bereaved people")}
TIMES = {"hours_to_acceptance_median": "From request to a volunteer accepting (median)",
         "hours_to_acceptance_p90": "From request to a volunteer accepting (9 in 10 within)"}


def tile_text(key: str, value) -> str:
    """A measure as its tile shows it: a time in minutes, hours or days, a rate as a percentage, "—" for none."""
    if key in TIMES:
        return domain.duration_words(value) if value is None or isinstance(value, (int, float)) else str(value)
    if key in domain.AMOUNTS:
        return domain.money_text(value)
    if value is None:
        return "—"
    if key == "match_rate" and isinstance(value, int):
        return f"{value}%"
    if isinstance(value, float):
        return f"{value:g}"  # hours as people write them: "19", "15.5"
    return str(value)


def tiles(period: dict, baseline: dict | None = None) -> list[tuple[str, list[dict]]]:
    """The latest period's tiles under their headings: each measure's label, value, the period before's and the
    baseline's (None without one)."""
    labels = {m.key: m.label for m in MEASURES} | TIMES
    return [(heading, [{"key": key, "label": labels[key], "value": tile_text(key, period["measures"][key]),
                        "before": tile_text(key, period["previous"][key]),
                        "baseline": tile_text(key, baseline["measures"][key]) if baseline else None}
                       for key in keys])
            for heading, keys in GROUPS]


def survey_rows(period: dict) -> dict[str, list[dict]]:
    """Each survey group's questions with their answers, distribution by band and mean, as shown (suppressed)."""
    now = period["measures"]
    rows: dict[str, list[dict]] = {heading: [] for heading in SURVEY_GROUPS}
    for question, answers in now["survey_responses"].items():
        heading = next((h for h, who in SURVEY_GROUPS.items() if question.split(":")[0] in who), None)
        if heading is not None:
            mean = now["survey_means"][question]
            rows[heading].append({"question": question, "answers": answers,
                                  "mean": f"{mean:g}" if isinstance(mean, float) else mean,
                                  "bands": [(p.rsplit(": ", 1)[1], n) for p, n in now["survey_answers"].items()
                                            if p.rsplit(": ", 1)[0] == question]})
    return rows


def period_words(start, end) -> str:
    """A period as a heading names it: "April 2026", "Q2 2026: 1 Apr to 30 Jun", "2026", or its first and last day."""
    if start.day == 1 and start.month == end.month and start.year == end.year and (end.day >= 28):
        return start.strftime("%B %Y")
    if (start.month, start.day, end.month, end.day) == (1, 1, 12, 31) and start.year == end.year:
        return str(start.year)
    return f"{start.strftime('%-d %b %Y')} to {end.strftime('%-d %b %Y')}"


def by_activity_kind(period: dict) -> list[dict]:
    """Group activities and their attendance by kind, this period and the one before (suppressed as shown)."""
    now, before = period["measures"], period["previous"]
    return [{"kind": kind, "label": label, "activities": now["activities_by_kind"].get(kind, 0),
             "attendance": now["attendance_by_kind"].get(kind, 0),
             "before": before["activities_by_kind"].get(kind, 0)}
            for kind, label in ACTIVITY_LABELS.items()]


def reach(period: dict) -> list[dict]:
    """The period's reach and equity: each dimension's parts in words, this period's and the one before's people
    supported (suppressed as shown)."""
    now, before = period.get("equity", {}), period.get("previous_equity", {})
    return [{"key": key, "label": label, "parts": [
                {"part": part, "label": equity.label(dimension, part), "now": now[key].get(part, 0),
                 "before": before.get(key, {}).get(part, 0)}
                for part in sorted(set(now[key]) | set(before.get(key, {})), key=_part_order(dimension))]}
            for (dimension, label), key in zip(equity.DIMENSIONS, EQUITY_KEYS) if key in now]


def _part_order(dimension: str):
    """Parts in a reader's order: deciles and bands by number, the answers before "prefer not" and "not recorded"."""
    last = (equity.UNKNOWN, equity.PREFER_NOT, equity.NOT_RECORDED)

    def order(part: str):
        if part in last:
            return (2, last.index(part), "")
        if dimension == "deprivation_decile":
            return (0, int(part), "")
        return (1, 0, part) if dimension != "age_band" else (0, equity.AGE_BANDS.index(part)
                                                             if part in equity.AGE_BANDS else 99, part)
    return order


@blp.route("/dashboard")
@page_requires(*MANAGERS)
def dashboard():
    """This period's numbers with the last period's, each measure over the last six periods, and the table."""
    try:  # `baseline=set`: the baseline form's "saved", not a filter
        query = ActivityQuery().load({k: v for k, v in request.args.items() if v and k != "baseline"})
    except ValidationError as err:
        return refused(err)
    period = query["period"]
    result = service_layer.dashboard(service().uow(), current_actor(), period, filters_of(query),
                                     service().settings, clock.today())
    charts = [{"measure": m, "chart": bars([(p["start"].strftime("%d %b" if period in ("day", "week") else "%b %Y"),
                                             p["measures"][m.key]) for p in result["periods"]])}
              for m in MEASURES if m.is_count]
    latest = result["periods"][-1]
    return render_template("dashboard.html", result=result, latest=latest, charts=charts,
                           groups=tiles(latest, result["baseline"]), kinds=by_activity_kind(latest),
                           surveys=survey_rows(latest),
                           reach=reach(latest), reach_all=len(current_actor().communities) > 1,
                           partner_types=[(t, part_label(t, "partners_by_type"), n,
                                           latest["previous"]["partners_by_type"].get(t, 0))
                                          for t, n in latest["measures"]["partners_by_type"].items()],
                           scores=[(score, latest["measures"]["wellbeing_scores"].get(score, 0),
                                    latest["previous"]["wellbeing_scores"].get(score, 0)) for score in "12345"],
                           table=csv_rows(result), query=request.args, periods=PERIODS, errors={},
                           csv_url="/dashboard/activity.csv?" + request.query_string.decode(),
                           so_far=domain.so_far(latest["start"], latest["end"], clock.today()),
                           baseline=_baseline_form(result), saved=request.args.get("baseline") == "set")


def _baseline_form(result: dict | None) -> dict | None:
    """What the dashboard says of the baseline: its period's words, and the day it was set from (for the form);
    None when several communities are shown (each has its own)."""
    if result is None or len(result["communities"]) != 1:
        return None
    chosen = result["baseline"]
    return {"community": result["communities"][0],
            "words": period_words(chosen["start"], chosen["end"]) if chosen else None,
            "starts_on": chosen["start"].isoformat() if chosen else ""}


@blp.route("/dashboard/baseline", methods=["POST"])
@page_requires(*MANAGERS)
def baseline_page():
    """Set the community's baseline from the dashboard's form (PUT /activity/baseline's schema and use case), then
    show the dashboard again with the choices the manager had made."""
    back = {k: v for k, v in request.form.items() if k in ("period", "from", "to", "community") and v}
    data = {k: v for k, v in (("starts_on", request.form.get("starts_on", "").strip()),
                              ("community", request.form.get("community"))) if v}
    try:
        loaded = BaselineIn().load(data)
        service_layer.set_baseline(service().uow(), current_actor(), loaded.get("community"), loaded["starts_on"],
                                   clock.utcnow())
    except ValidationError as err:
        return refused(err, status=422, query=back)
    except domain.NotYourCommunity as err:
        return refused(ValidationError({"starts_on": [str(err)]}), status=403, query=back)
    return redirect("/dashboard?" + urlencode({**back, "baseline": "set"}), 303)


@blp.route("/dashboard/activity.csv")
@page_requires(*MANAGERS)
def dashboard_csv():
    """The dashboard's table as a file (the same periods the page shows), for the manager signed in here (the API's
    /activity.csv wants a token, which a browser following a link does not send)."""
    try:
        query = ActivityQuery().load({k: v for k, v in request.args.items() if v})
    except ValidationError as err:
        return refused(err)
    return csv_file(service_layer.dashboard(service().uow(), current_actor(), query["period"], filters_of(query),
                                            service().settings, clock.today()))


FIELDS = {"period": "Period", "from": "From", "to": "To", "starts_on": "Baseline: any day of it"}  # as labelled


def refused(err: ValidationError, status: int = 422, query=None):
    """The dashboard's form again, with what was chosen kept and each problem beside its field (422)."""
    errors = {field: " ".join(messages) if isinstance(messages, list) else str(messages)
              for field, messages in err.messages.items()}
    return render_template("dashboard.html", errors=errors, fields=FIELDS, result=None, charts=[],
                           query=request.args if query is None else query, periods=PERIODS,
                           baseline={"community": request.form.get("community", ""), "words": None,
                                     "starts_on": request.form.get("starts_on", "")}
                           if "starts_on" in errors else None), status


# The report's sections: a funder reads what was asked for, what was given, who gave it, and with whom.
SECTIONS = (
    ("Requests for support", ("requests_received", "requests_matched", "match_rate", "occurrences_matched",
                              "requests_rematched", "requests_unmatched", "requests_cancelled",
                              "requests_signposted")),
    ("How quickly help comes", ("hours_to_acceptance_median", "hours_to_acceptance_p90")),
    ("Support given", ("tasks_completed", "volunteer_hours", "volunteer_time_value", "people_reached",
                       "carers_supported", "bereavement_supports", "future_planning_reached", "education_reached",
                       "befriending_started",
                       "befriending_ended", "befriending_visits")),
    ("Volunteers", ("volunteers_registered", "new_volunteers", "active_volunteers", "volunteers_paused",
                    "volunteers_left")),
    ("In the community", ("group_activities", "group_attendance", "active_partners", "providers_adopting",
                          "carer_survey_answers", "user_survey_answers")),
)  # concerns raised and closed are the dashboard's and the API's: the report is a funder's, on one page


REPORT_TITLES = {"activities_by_kind": "Group activities by kind", "partners_by_type": "Active partners by type"}
# Breakdowns the report leaves to the dashboard and its CSV, so that it prints on one page: attendance by kind, and
# the survey answers by question, by band and their means (the report has the answers of carers and of the others).
ON_THE_DASHBOARD_ONLY = ("attendance_by_kind", "wellbeing_scores", "survey_responses", "survey_answers",
                         "survey_means")
REPORT_CHARTS = ("requests_received", "tasks_completed", "people_reached", "active_volunteers")  # over six periods


def part_label(part: str, breakdown: str = "") -> str:
    """A breakdown's part as a funder reads it: a kind of help's, activity's or organisation's label, or a source in
    words."""
    if breakdown == "partners_by_type":
        return PARTNER_LABELS.get(part, ORGANISATION_LABELS.get(part, part))
    if part in ACTIVITY_LABELS:
        return ACTIVITY_LABELS[part]
    return KINDS[part].label if part in KINDS else part.replace("_", " ").capitalize().replace("Pcn", "PCN")


def change(now, before, key: str = "") -> str:
    """How a measure moved since the period before, when both are numbers that may be shown (a time in words, a
    rate in percentage points)."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (now, before)):
        return ""
    difference = round(now - before, 2)
    if not difference:
        return "same"
    if key in TIMES:
        return ("+" if difference > 0 else "−") + domain.duration_words(abs(difference))
    return f"{difference:+g}" + (" points" if key == "match_rate" else "")


@blp.route("/report")
@page_requires(*MANAGERS)
def report():
    """One period on one printable page: each measure beside the period before's, and where requests came from."""
    args = {k: v for k, v in request.args.items() if v and k in ("period", "community", "to")}
    try:
        query = ActivityQuery().load(args)
    except ValidationError as err:
        return render_template("report.html", errors=err.messages, result=None, query=request.args,
                               periods=PERIODS), 422
    result = service_layer.report(service().uow(), current_actor(), query["period"], filters_of(query),
                                  service().settings, clock.today())
    known = communities.all_communities()
    labels = {m.key: m.label for m in MEASURES}
    shown, baseline = result["periods"][0], result["baseline"]
    sections = [(title, [(labels[key], tile_text(key, shown["measures"][key]), tile_text(key, shown["previous"][key]),
                          change(shown["measures"][key], shown["previous"][key], key),
                          tile_text(key, baseline["measures"][key]) if baseline else None) for key in keys])
                for title, keys in SECTIONS]
    trend = result["trend"]
    charts = [{"label": labels[key], "chart": bars([(p["start"].strftime("%b" if query["period"] == "month" else
                                                                         "%d %b" if query["period"] in ("day", "week")
                                                                         else "%b %y"), p["measures"][key])
                                                    for p in trend], width=200, height=70)}
              for key in REPORT_CHARTS]
    now, then = shown["measures"], shown["previous"]
    breakdowns = [(REPORT_TITLES.get(key, title), [(part_label(part, key), now[key].get(part, 0),
                                                    then[key].get(part, 0))
                                                   for part in sorted(set(now[key]) | set(then[key]))])
                  for key, title in BREAKDOWNS if key not in ON_THE_DASHBOARD_ONLY]
    return render_template("report.html", result=result, shown=shown, before=result["before"],
                           sections=sections, breakdowns=breakdowns, errors={}, query=request.args, charts=charts,
                           reach=[{**d, "parts": parts} for d in reach(shown)
                                  if (parts := [p for p in d["parts"] if p["now"] != 0])],  # this period's people
                           baseline=period_words(baseline["start"], baseline["end"]) if baseline else None,
                           periods=PERIODS, names=[known[c].name if c in known else c for c in result["communities"]],
                           made=clock.today().strftime("%d %B %Y"))


# --- communities side by side: the ICS view ------------------------------------------------------------------------

def _side_by_side(query: dict) -> dict:
    """The signed-in manager's communities side by side for the period asked about (the last whole one by
    default)."""
    return service_layer.communities_side_by_side(service().uow(), current_actor(), query["period"], query.get("to"),
                                                  service().settings, clock.today())


@blp.route("/dashboard/communities")
@page_requires(*MANAGERS)
def communities_page():
    """Each of the manager's communities beside the others and their total (a regional manager's, an integrated
    care system's, view across boundaries), every count suppressed so that the total gives no hidden one away."""
    args = {k: v for k, v in request.args.items() if v and k in ("period", "to")}
    try:
        query = ActivityQuery().load(args)
    except ValidationError as err:
        return render_template("communities.html", errors=err.messages, result=None, query=request.args,
                               periods=PERIODS), 422
    result = _side_by_side(query)
    known = communities.all_communities()
    columns = [(c, known[c].name if c in known else c) for c in result["columns"] if c != TOTAL]
    if TOTAL in result["columns"]:
        columns.append((TOTAL, "Total"))
    labels = {m.key: m.label for m in MEASURES}
    first = result["columns"][columns[0][0]]
    counts = [(labels[key], key, [result["columns"][c][key] for c, _ in columns]) for key in SIDE_BY_SIDE]
    distributions = [(label, key, [(equity.label(dimension, part), [result["columns"][c][key][part]
                                                                    for c, _ in columns])
                                   for part in sorted(first[key], key=_part_order(dimension))])
                     for (dimension, label), key in zip(equity.DIMENSIONS, EQUITY_KEYS)]
    return render_template("communities.html", result=result, columns=columns, counts=counts,
                           distributions=distributions, errors={}, query=request.args, periods=PERIODS,
                           words=period_words(result["from"], result["to"]),
                           csv_url="/dashboard/communities.csv?" + request.query_string.decode())


@blp.route("/dashboard/communities.csv")
@page_requires(*MANAGERS)
def communities_csv():
    """The ICS view's table as a file, for the manager signed in here."""
    try:
        query = ActivityQuery().load({k: v for k, v in request.args.items() if v and k in ("period", "to")})
    except ValidationError as err:
        return refused(err)
    out = io.StringIO()
    csv.writer(out).writerows(side_by_side_rows(_side_by_side(query)))
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="communities.csv"'})


# --- group activities, logged by coordinators ---------------------------------------------------------------------

COORDINATORS = ("coordinator", "admin")
ACTIVITY_FIELDS = {"kind": "Kind of activity", "held_on": "Date", "organisation": "Organised by",
                   "organisation_type": "Type of organisation", "attendance": "People attending"}
ORGANISATION_LABELS = {key: label for key, (label, _source) in ORGANISATION_KINDS.items()} | {
    domain.UNKNOWN_TYPE: "Not in the register"}
# The same, short, as a breakdown's rows say them (on one printed page)
PARTNER_LABELS = {"pcn": "PCN", "gp_practice": "GP practice", "hospice": "Hospice",
                  "social_prescribing": "Social prescribing", "vcfse": "VCFSE", "faith_group": "Faith group",
                  "local_authority": "Local authority", "business": "Business", "health_system": "NHS / Ontario Health",
                  domain.UNKNOWN_TYPE: "Not in the register"}


VOLUNTEER_ROWS = 6  # volunteers the form takes at once (the API takes more)


def _volunteer_rows(form) -> tuple[list[dict], dict[int, int]]:
    """The volunteers and hours the form's rows give (`volunteers.<n>.volunteer_id`, `volunteers.<n>.hours`), each
    row with anything in it, as the API takes them (hours a number where they read as one), and which row each
    came from (so a problem is shown beside its own row)."""
    given, rows = [], {}
    for row in range(VOLUNTEER_ROWS):
        volunteer = form.get(f"volunteers.{row}.volunteer_id", "").strip()
        hours = form.get(f"volunteers.{row}.hours", "").strip()
        if not volunteer and not hours:
            continue
        try:
            number: object = float(hours.replace(",", "."))
        except ValueError:
            number = hours
        rows[len(given)] = row
        given.append({"volunteer_id": volunteer, "hours": number} if hours else {"volunteer_id": volunteer})
    return given, rows


def _activities_page(errors: FormErrors, form, status: int = 200):
    """The form to log a group activity and the community's activities, newest first."""
    logged = service_layer.activities_logged(service().uow(), current_actor())
    registered = service_layer.registered_names(service().uow(), current_actor())
    return render_template("activities.html", errors=errors, form=form, logged=logged, labels=ACTIVITY_LABELS,
                           registered=registered,
                           kinds=list(ACTIVITY_LABELS.items()),
                           organisation_types=[(t, ORGANISATION_LABELS.get(t, t)) for t in ORGANISATION_TYPES],
                           organisations=ORGANISATION_LABELS, saved=request.args.get("logged") == "1",
                           rows=range(VOLUNTEER_ROWS)), status


@blp.route("/dashboard/activities", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def activities_page():
    """Log a group activity or event (POST /activities' schema and use case), and see the ones logged."""
    if request.method == "GET":
        return _activities_page(FormErrors(), {})
    data: dict = {name: value for name in ACTIVITY_FIELDS if (value := request.form.get(name, "").strip())}
    if data.get("attendance", "").lstrip("-").isdigit():
        data["attendance"] = int(data["attendance"])  # the API takes a JSON number; the form sends text
    data["volunteers"], rows = _volunteer_rows(request.form)
    try:
        loaded = ActivityIn().load(data)
    except ValidationError as err:
        def on_its_row(field: str) -> str:  # "volunteers.0.hours" is the second row's when the first was empty
            parts = field.split(".")
            if parts[0] == "volunteers" and len(parts) == 3 and parts[1].isdigit():
                return f"volunteers.{rows.get(int(parts[1]), parts[1])}.{parts[2]}"
            return "volunteers.0.volunteer_id" if field == "volunteers" else field
        labels = ACTIVITY_FIELDS | {f"volunteers.{n}.{part}": f"{label} {n + 1}" for n in range(VOLUNTEER_ROWS)
                                    for part, label in (("volunteer_id", "Volunteer's id"), ("hours", "Hours"))}
        return _activities_page(FormErrors(err.messages, labels, rename=on_its_row), request.form, 422)
    try:
        service_layer.log_activity(service().uow(), current_actor(), loaded, clock.utcnow())
    except domain.NotYourCommunity as err:
        return _activities_page(FormErrors().add("kind", ACTIVITY_FIELDS["kind"], str(err)), request.form, 403)
    return redirect("/dashboard/activities?logged=1", 303)
