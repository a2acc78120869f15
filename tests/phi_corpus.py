"""A generated corpus of clinical and radiology reports with known PHI spans, for de-identification tests.

``make_corpus(n, seed)`` returns ``[(text, spans)]`` where each span is ``(start, end, type)``. Reports
mix a header (varied field labels, casing and punctuation), body sentences with PHI of every type in
several formats, clinical sentences with eponyms, fractions, measurements, young ages and bare years
(none of which is PHI), and a signature. Names, cities and streets come from this file's own lists,
about a third of which are not in medfuse's name and place lists, so those must be found by context.
"""

from __future__ import annotations

import datetime as dt
import random
import string
from collections.abc import Callable

Span = tuple[int, int, str]


def _tokens(block: str) -> list[str]:
    return block.split()


FIRST = _tokens("""James Maria Robert Linda Michael Patricia David Jennifer Carlos Aisha Wei Priya Kwame Olga Sean Fatima
Daniel Emily Jose Hannah Ahmed Sofia Thomas Grace Kevin Mei Samuel Ngozi Luis Ingrid Olumide Siobhan Thandiwe
Bartholomew Anneliese Xiomara Dagny Leopoldo Ifeoma Kazuo Radomir Marisol Eamon Henrike Tobias Yevgenia Cosmin
Anjali Rohan Wilhelmina Mateo Valeria Emeka Solveig Ignatius Perpetua Casimir Zuzana Florian Benedetta""")
LAST = _tokens("""Smith Johnson Garcia Nguyen Patel Miller Brown Rodriguez Kim Okafor Chen Schmidt Rossi Hernandez Wilson
Murphy Bell Graves Kowalczyk Abernathy Fitzwilliam Okonjo Delacroix O'Sullivan McAllister Nakashima Przybylski
Achterberg Haddad Lindqvist Moreau Castellanos Oyelaran Brennan-Hale Szabo Quintero Ferreira Vasquez-Whitfield
Thorvaldsen Mbatha Iwasaki Papadakis Grünewald Ekwueme Dubrovsky Halloran Marchetti Oduya Villaseñor""")
TITLES = ["Dr.", "Dr", "Mr.", "Mrs.", "Ms.", "Mr", "DR."]
CITIES = ["Dayton", "Toledo", "Tucson", "Boise", "Spokane", "Knoxville", "Fresno", "Worcester", "Akron", "Savannah",
          "Millersburg", "Yellow Springs", "Pocatello", "Brattleboro", "Chillicothe", "Walla Walla", "Kalispell",
          "Ypsilanti", "Ashtabula", "Oskaloosa"]
STATES = ["OH", "AZ", "ID", "WA", "TN", "CA", "MA", "GA", "VT", "MT", "MI", "IA", "Ohio", "Texas", "Oregon"]
STREETS = ["Maple", "Birch", "Elmwood", "Sycamore", "Harbor View", "Old Mill", "Martin Luther King Jr.", "Quail Run",
           "Kettering", "Wyndham", "Larkspur", "Chestnut Hill"]
SUFFIXES = ["Street", "St.", "Avenue", "Ave", "Road", "Rd.", "Drive", "Dr.", "Lane", "Blvd", "Court", "Way", "Terrace"]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "mercyhealth.org", "stvincent.net", "uhosp.edu"]
FACILITY_KINDS = ["Memorial Hospital", "Medical Center", "Regional Medical Center", "Clinic", "Community Hospital"]

EPONYM_SENTENCES = [
    "History of Parkinson's disease and Hodgkin lymphoma in remission.", "Known Graves disease, on methimazole.",
    "Findings compatible with Crohn disease of the terminal ileum.", "Early Alzheimer dementia per neurology.",
    "Patient with Down syndrome.", "Cushing syndrome was excluded.", "Addison disease on hydrocortisone.",
    "Wilson's disease, liver appears cirrhotic.", "Bell's palsy on the left, improving.",
    "Barrett esophagus on prior endoscopy.", "Hashimoto thyroiditis.", "Kaposi sarcoma lesions on the skin.",
    "Paget disease of the right hemipelvis.", "Raynaud phenomenon.", "Sjogren syndrome with parotid changes.",
    "Tourette syndrome.", "Wernicke encephalopathy suspected.", "Lesion near Broca's area.",
    "Positive Babinski sign on the right.", "Negative Homan sign.", "Positive Murphy sign on ultrasound.",
    "Foley catheter in place.", "Swan-Ganz catheter tip in the right pulmonary artery.",
    "Glasgow Coma Scale 14 on arrival.", "Apgar scores 8 and 9.", "Jones fracture of the fifth metatarsal.",
    "Salter-Harris II fracture of the distal radius.", "Small Baker cyst.", "Kerley B lines at the bases.",
    "Free fluid in the pouch of Douglas.", "Circle of Willis is patent.", "Meckel diverticulum is not seen.",
    "Status post Whipple procedure.", "Prior Nissen fundoplication.", "Colles fracture, healing.",
    "Hill-Sachs deformity of the humeral head.", "Mallory-Weiss tear suspected.", "Guillain-Barre syndrome.",
]
CLINICAL_SENTENCES = [
    "Motor strength 4/5 in the left upper extremity and 5/5 on the right.", "Grade 2/6 systolic murmur.",
    "BP 128/76, HR 88.", "A 12 x 8 mm nodule in the right upper lobe.", "T2 hyperintense lesion measuring 1.5 cm.",
    "No acute intracranial abnormality.", "Lungs are clear. No pleural effusion.", "Take 1/2 tablet twice daily.",
    "Heart size is normal.", "Mild degenerative change of the lumbar spine at L4-5.", "Hospital day 3.",
    "The patient denies chest pain.", "Stable compared with the prior examination.", "Vision 20/40 in the left eye.",
    "Appendectomy in 2009.", "Diagnosed in 2015 and treated with chemotherapy.", "CT dose DLP 450 mGy-cm.",
    "Impression: No evidence of pulmonary embolism.", "Recommend follow-up CT in 3 months.",
    "Normal sinus rhythm, rate 72.", "Left ventricular ejection fraction 55%.", "Will follow up with cardiology.",
    "May represent atelectasis.", "Findings were discussed with the care team.", "Contrast: 80 mL Omnipaque 350.",
]


class _Doc:
    """Builds a text piece by piece, recording where each PHI value lands."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[Span] = []
        self.pos = 0

    def add(self, text: str) -> _Doc:
        self.parts.append(text)
        self.pos += len(text)
        return self

    def phi(self, text: str, kind: str) -> _Doc:
        self.spans.append((self.pos, self.pos + len(text), kind))
        return self.add(text)

    def text(self) -> str:
        return "".join(self.parts)


def _person(r: random.Random) -> tuple[str, str, str]:
    return r.choice(FIRST), r.choice(LAST), r.choice(string.ascii_uppercase)


def _name(doc: _Doc, r: random.Random, style: str | None = None) -> None:
    first, last, initial = _person(r)
    style = style or r.choice(["first last", "first i last", "last, first", "LAST, FIRST", "LAST, FIRST I", "i. last"])
    if style == "first last":
        doc.phi(f"{first} {last}", "NAME")
    elif style == "first i last":
        doc.phi(f"{first} {initial}. {last}", "NAME")
    elif style == "last, first":
        doc.phi(f"{last}, {first}", "NAME")
    elif style == "LAST, FIRST":
        doc.phi(f"{last.upper()}, {first.upper()}", "NAME")
    elif style == "LAST, FIRST I":
        doc.phi(f"{last.upper()}, {first.upper()} {initial}", "NAME")
    else:
        doc.phi(f"{initial}. {last}", "NAME")


def _date_text(r: random.Random, d: dt.date) -> str:
    month, day = d.strftime("%B"), d.day
    ordinal = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return r.choice([
        f"{d.month:02d}/{day:02d}/{d.year}", f"{d.month}/{day}/{d.year % 100:02d}", d.isoformat(),
        f"{day} {month} {d.year}", f"{month} {day}, {d.year}", f"{month[:3]} {day} {d.year}",
        f"{month[:3]}. {day}, {d.year}", f"{day:02d}-{month[:3].upper()}-{d.year}", f"{day:02d}.{d.month:02d}.{d.year}",
        f"{month[:3]} {day}{ordinal}", f"{d.year}/{d.month:02d}/{day:02d}", f"{month.upper()} {day}, {d.year}",
        f"{d.month}-{day}-{d.year}", f"{d.strftime('%A')}, {month} {day}, {d.year}", f"{day}{ordinal} of {month}, {d.year}",
        f"{month[:3]}-{day:02d}-{d.year}", f"{day:02d}{month[:3]}{d.year}", f"{d.year}.{d.month:02d}.{day:02d}",
        f"{month[:3]}. {d.year}", f"{month} of {d.year}",
    ])


def _random_date(r: random.Random, lo: int = 1925, hi: int = 2023) -> dt.date:
    return dt.date(lo, 1, 1) + dt.timedelta(days=r.randrange((dt.date(hi, 12, 31) - dt.date(lo, 1, 1)).days))


def _phone(r: random.Random) -> str:
    a, b, c = r.randint(201, 989), r.randint(200, 999), r.randint(0, 9999)
    text = r.choice([f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"+1 {a} {b} {c:04d}",
                     f"1-{a}-{b}-{c:04d}", f"({a}){b}-{c:04d}", f"{a} {b} {c:04d}", f"({a})-{b}-{c:04d}"])
    return text + r.choice(["", "", "", f" x{r.randint(100, 9999)}", f" ext. {r.randint(10, 999)}"])


def _id_value(r: random.Random) -> str:
    return r.choice([
        str(r.randint(1_000_000, 99_999_999)), f"{r.choice('ABCDEFGHJKMNPRSTUVWXYZ')}{r.randint(100000, 9999999)}",
        f"RAD-{r.randint(2015, 2023)}-{r.randint(10000, 999999)}", f"{r.randint(100, 999)}-{r.randint(1000, 99999)}",
        "".join(r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(10)) + str(r.randint(0, 9)),
    ])


def _age_phrase(doc: _Doc, r: random.Random, age: int) -> None:
    """Write an age; ages over 89 are PHI, younger ones are not."""
    fmt = r.choice(["{}-year-old", "{} year old", "{} yo", "{} y/o", "{}yo", "age {}", "Age: {}", "aged {} years",
                    "{} years of age", "{}M", "{} F", "{}-yr-old", "{} YO", "{} y.o.", "{} year-old", "{}yo F",
                    "age of {}", "{}-year old"])
    before, after = fmt.split("{}")
    doc.add(before)
    if age >= 90:
        doc.phi(str(age), "AGE")
    else:
        doc.add(str(age))
    doc.add(after)


def _address(doc: _Doc, r: random.Random) -> None:
    street = f"{r.randint(1, 9999)} " + r.choice(["", "", "N. ", "W ", "South "]) + r.choice(STREETS) + " " + r.choice(SUFFIXES)
    if r.random() < 0.3:
        street += r.choice([f", Apt {r.randint(1, 40)}{r.choice('ABC')}", f" Suite {r.randint(100, 900)}", f" #{r.randint(1, 99)}"])
    if r.random() < 0.15:
        street = street.upper()
    if r.random() < 0.1:
        street = f"P.O. Box {r.randint(10, 9999)}"
    doc.phi(street, "ADDRESS")
    doc.add(", ")
    _city_state(doc, r)


def _city_state(doc: _Doc, r: random.Random) -> None:
    doc.phi(r.choice(CITIES), "LOCATION").add(", " + r.choice(STATES) + " ")
    doc.phi(f"{r.randint(10000, 99999)}" + (f"-{r.randint(1000, 9999)}" if r.random() < 0.2 else ""), "LOCATION")


def _header(doc: _Doc, r: random.Random, when: dt.date) -> None:
    label = r.choice(["Patient: ", "PATIENT NAME: ", "Pt name: ", "Name: ", "Patient Name - ", "PATIENT: ", "Pt: ",
                      "Patient name:", "NAME:  "])
    doc.add(label)
    _name(doc, r, "LAST, FIRST" if label.isupper() else None)
    doc.add(r.choice(["\n", "   ", " | "]))
    doc.add(r.choice(["MRN: ", "MR# ", "Medical Record No. ", "MRN ", "Med Rec #: "])).phi(_id_value(r), "ID").add("\n")
    if r.random() < 0.7:
        doc.add(r.choice(["DOB: ", "Date of Birth: ", "D.O.B. ", "Birth date: "]))
        doc.phi(_date_text(r, _random_date(r, 1925, 2005)), "DATE").add("\n")
    doc.add(r.choice(["Exam date: ", "Date of service: ", "Study Date - ", "DATE OF EXAM: ", "Examined on "]))
    doc.phi(_date_text(r, when), "DATE").add("\n")
    if r.random() < 0.6:
        doc.add(r.choice(["Accession: ", "Acc# ", "ACCESSION NUMBER: ", "Acct #: ", "Account No. "])).phi(_id_value(r), "ID").add("\n")
    if r.random() < 0.6:
        doc.add(r.choice(["Referring physician: ", "Ordering MD: ", "REFERRING: ", "Requested by: ", "Ordering provider - "]))
        if r.random() < 0.5:
            doc.add(r.choice(["Dr. ", "Dr "]))
            doc.phi(r.choice(LAST), "NAME")
        else:
            _name(doc, r, r.choice(["first last", "last, first", "first i last"]))
        doc.add("\n")


def _body(doc: _Doc, r: random.Random, when: dt.date) -> None:
    pieces: list[Callable[[], None]] = []

    def titled() -> None:
        title = r.choice(TITLES)
        doc.add(f"{title} ").phi(r.choice(LAST), "NAME")
        doc.add(r.choice([" is a ", " was seen as a ", ", a "]))
        _age_phrase(doc, r, r.choice([34, 58, 67, 71, 84, 89, 90, 91, 93, 95, 97, 101]))
        doc.add(r.choice([" with cough.", " presenting with abdominal pain.", " after a fall. "]))

    def unlabelled_name() -> None:
        doc.phi(f"{r.choice(FIRST[:30])} {r.choice(LAST[:16])}", "NAME")
        doc.add(r.choice([" presented to the emergency department.", " returns for follow-up.", " was admitted overnight."]))

    def discussed() -> None:
        doc.add(r.choice(["Findings discussed with ", "Results called to ", "d/w ", "Critical result communicated to ",
                          "Case reviewed with ", "Spoke with "]))
        if r.random() < 0.5:
            doc.add(r.choice(["Dr. ", "Dr "])).phi(r.choice(LAST), "NAME")
        else:
            _name(doc, r, "first last")
            doc.add(r.choice(["", ", RN", ", NP", " (charge nurse)"]))
        doc.add(r.choice([" at 14:32 on ", " on ", " by phone on "]))
        doc.phi(_date_text(r, when), "DATE").add(".")

    def family() -> None:
        doc.add(r.choice(["His wife ", "Her daughter, ", "Accompanied by her son ", "Her husband ", "Mother ",
                          "Emergency contact: "]))
        if r.random() < 0.5:
            doc.phi(r.choice(FIRST), "NAME")
        else:
            _name(doc, r, "first last")
        ending = r.choice(["present", "reachable", "phone"])
        if ending == "present":
            doc.add(r.choice([" was present.", ", was at the bedside."]))
        elif ending == "reachable":
            doc.add(", reachable at ").phi(_phone(r), "PHONE").add(".")
        else:
            doc.add(" (phone ").phi(_phone(r), "PHONE").add(").")

    def contact() -> None:
        doc.add(r.choice(["Tel: ", "Phone ", "Call back at ", "Fax: ", "Cell #: ", "Pager ", "ph. ", "Contact number "]))
        doc.phi(_phone(r), "PHONE").add(r.choice([".", " ", "; "]))
        email = f"{r.choice(FIRST).lower()}.{r.choice(LAST).lower().replace(chr(39), '')}{r.randint(1, 99)}@{r.choice(DOMAINS)}"
        doc.add(r.choice(["E-mail: ", "email ", "Email address - ", "e-mail "])).phi(email.upper() if r.random() < 0.1 else email, "EMAIL")
        doc.add(".")

    def address() -> None:
        doc.add(r.choice(["Address: ", "Home address: ", "Lives at ", "Residence: "]))
        _address(doc, r)
        doc.add(".")

    def place() -> None:
        doc.add(r.choice(["Patient lives alone in ", "A resident of ", "Recently moved to ", "Visiting from ",
                          "Transferred from ", "Originally from ", "Lives with her daughter in ", "Born in ",
                          "Works in ", "She returned home to "]))
        if r.random() < 0.3:
            name = r.choice(["St. " + r.choice(FIRST) + "'s", r.choice(LAST), r.choice(CITIES)])
            doc.phi(f"{name} {r.choice(FACILITY_KINDS)}", "LOCATION")
        else:
            doc.phi(r.choice(CITIES), "LOCATION")
        doc.add(".")

    def county() -> None:
        doc.add(r.choice(["Referred by the health department of ", "Jail medical unit, ", "Resides in "]))
        doc.phi(f"{r.choice(LAST[:20])} County", "LOCATION").add(".")

    def cc_list() -> None:
        doc.add(r.choice(["cc: ", "CC: ", "Copy to: "]))
        for k in range(r.randint(1, 3)):
            if k:
                doc.add(r.choice(["; ", ", "]))
            doc.add(r.choice(["Dr. ", "Dr "])).phi(r.choice(LAST), "NAME")
        doc.add("\n")

    def courtesy() -> None:
        doc.add(r.choice(["Thank you, Dr. ", "Dear Dr. ", "Per Dr. ", "Signed out to Dr. ", "MR. ", "Patient seen with Dr. "]))
        doc.phi(r.choice(LAST).upper() if doc.parts[-1] == "MR. " else r.choice(LAST), "NAME")
        doc.add(r.choice([", for this referral.", ".", " today."]))

    def dates() -> None:
        doc.add(r.choice(["Compared with prior study from ", "Prior CT dated ", "Last seen ", "Surgery performed on ",
                          "Follow-up scheduled for ", "Symptoms began on "]))
        d = when - dt.timedelta(days=r.randint(1, 900))
        if r.random() < 0.2:
            doc.phi(f"{d.month}/{d.day}", "DATE")
        else:
            doc.phi(_date_text(r, d), "DATE")
        doc.add(r.choice([".", ", unchanged.", "; see below."]))

    def ids() -> None:
        doc.add(r.choice(["Health plan ID: ", "Member #: ", "License no. ", "Device serial: ", "Pacemaker serial number ",
                          "Encounter #: ", "Insurance policy number ", "NPI: ", "Case no. ", "Specimen ID: ", "Order # ",
                          "DEA# ", "Visit ID ", "Encounter number: ", "Medicare ID: ", "Serial No. "]))
        doc.phi(_id_value(r), "ID").add(".")

    def network() -> None:
        choice = r.random()
        if choice < 0.35:
            doc.add(r.choice(["Images uploaded to ", "Portal: ", "See "]))
            doc.phi(r.choice([f"https://portal.{r.choice(DOMAINS)}/patient/{r.randint(1000, 99999)}",
                              f"portal.{r.choice(DOMAINS)}/records",
                              f"www.{r.choice(LAST).lower().replace(chr(39), '')}health.org",
                              f"http://pacs.{r.choice(DOMAINS)}/viewer?study={r.randint(1000, 99999)}"]), "URL")
            doc.add(".")
        elif choice < 0.7:
            doc.add(r.choice(["Workstation IP ", "Sent from host ", "Remote login from ", "IP address: "]))
            ip = (f"{r.choice([10, 172, 192])}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
                  if r.random() < 0.85 else f"fe80::{r.randint(1, 0xffff):x}:{r.randint(1, 0xffff):x}:{r.randint(1, 0xffff):x}")
            doc.phi(ip, "IP").add(".")
        else:
            doc.add(r.choice(["SSN: ", "Social security # ", "SS# ", "social security number "]))
            a, b, c = r.randint(100, 899), r.randint(10, 99), r.randint(1000, 9999)
            doc.phi(r.choice([f"{a}-{b}-{c}", f"{a}{b}{c}", f"{a} {b} {c}"]), "SSN").add(".")

    def age_sentence() -> None:
        doc.add(r.choice(["History: ", "Clinical history: ", "INDICATION: ", ""]))
        doc.add(r.choice(["", "A ", "This "]))
        _age_phrase(doc, r, r.choice([45, 62, 77, 88, 90, 92, 94, 96, 99, 103]))
        doc.add(r.choice([" woman with shortness of breath.", " male, fall from standing.", " with hip pain."]))

    pieces = [titled, unlabelled_name, discussed, family, contact, address, place, dates, ids, network, age_sentence,
              county, cc_list, courtesy]
    for piece in r.sample(pieces, k=r.randint(4, 7)):
        piece()
        doc.add(r.choice([" ", "\n", "  "]))
        if r.random() < 0.6:
            doc.add(r.choice(EPONYM_SENTENCES) + " ")
        if r.random() < 0.6:
            doc.add(r.choice(CLINICAL_SENTENCES) + r.choice([" ", "\n"]))


def _signature(doc: _Doc, r: random.Random, when: dt.date) -> None:
    doc.add(r.choice(["\nElectronically signed by: ", "\nDictated by: ", "\nSigned: ", "\nRead by ", "\nInterpreted by ",
                      "\n-- ", "\nAttending radiologist: ", "\nReviewed and approved by ", "\n/s/ ", "\nRadiologist: ",
                      "\nE-signed: ", "\n"]))
    first, last, initial = _person(r)
    form = r.choice(["{f} {l}, MD", "{f} {i}. {l}, M.D.", "Dr. {f} {l}", "{l}, {f} DO", "{f} {l}, MD, PhD", "{f} {l} MD"])
    rendered = form.format(f=first, l=last, i=initial)
    name_text = rendered.replace("Dr. ", "").replace(", MD, PhD", "").replace(", M.D.", "").replace(", MD", "")
    name_text = name_text.replace(" DO", "").replace(" MD", "")
    prefix = "Dr. " if rendered.startswith("Dr. ") else ""
    doc.add(prefix).phi(name_text, "NAME").add(rendered[len(prefix) + len(name_text):])
    if r.random() < 0.7:
        doc.add(r.choice([" on ", " ", " | Date: "])).phi(_date_text(r, when), "DATE")
        doc.add(r.choice([" 10:42", " at 9:15 AM", ""]))
    doc.add("\n")


def make_report(r: random.Random) -> tuple[str, list[Span]]:
    """Return one report and its PHI spans, drawn with ``r``."""
    doc = _Doc()
    when = _random_date(r, 2012, 2023)
    if r.random() < 0.12:  # a report without any PHI
        doc.add(" ".join(r.sample(EPONYM_SENTENCES, 3) + r.sample(CLINICAL_SENTENCES, 4)))
        return doc.text(), doc.spans
    _header(doc, r, when)
    doc.add(r.choice(["\nFINDINGS:\n", "\nFindings: ", "\nREPORT\n", "\n"]))
    _body(doc, r, when)
    _signature(doc, r, when)
    text = doc.text()
    if r.random() < 0.08 and len(text.upper()) == len(text):  # some systems write reports in capitals
        text = text.upper()
    return text, doc.spans


def make_corpus(n: int, seed: int) -> list[tuple[str, list[Span]]]:
    """Return ``n`` generated reports with their true PHI spans ``(start, end, type)``; same seed, same corpus."""
    r = random.Random(seed)
    return [make_report(r) for _ in range(n)]


def score_spans(corpus: list[tuple[str, list[Span]]], predicted: list[list[Span]]) -> dict[str, dict[str, float]]:
    """Return per-type recall, precision and F1 of ``predicted`` spans against the corpus's spans.

    A true span is found when every letter and digit in it lies inside predicted spans of its type;
    a predicted span is right when it overlaps a true span of its type.
    """
    found: dict[str, list[int]] = {}
    right: dict[str, list[int]] = {}
    for (text, truth), pred in zip(corpus, predicted):
        for start, end, kind in truth:
            covered = all(
                not text[i].isalnum() or any(s <= i < e and k == kind for s, e, k in pred) for i in range(start, end)
            )
            found.setdefault(kind, []).append(int(covered))
        for start, end, kind in pred:
            hit = any(s < end and start < e and k == kind for s, e, k in truth)
            right.setdefault(kind, []).append(int(hit))
    out: dict[str, dict[str, float]] = {}
    for kind in sorted(set(found) | set(right)):
        recall = sum(found.get(kind, [])) / max(1, len(found.get(kind, [])))
        precision = sum(right.get(kind, [])) / max(1, len(right.get(kind, [])))
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        out[kind] = {"recall": recall, "precision": precision, "f1": f1,
                     "true": len(found.get(kind, [])), "predicted": len(right.get(kind, []))}
    return out
