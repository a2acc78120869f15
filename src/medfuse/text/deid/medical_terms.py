"""Clinical vocabulary that must survive de-identification: eponyms and words that look like names.

``EPONYMS`` are surnames that in clinical text almost always name a disease, sign, device or scale
(Parkinson, Crohn, Foley, Apgar): word lists never turn them into names, but a title or label still
does ("Dr. Parkinson"). ``EPONYM_HEADS`` are the nouns that follow an eponym ("Graves disease",
"Jones fracture", "Murphy sign"): any name word right before them is taken for the eponym.
``COMMON_WORDS`` are capitalised words of reports (headers, anatomy, modalities, verbs) that are
never read as names, whatever context they follow.
"""

from __future__ import annotations

import re

__all__ = ["COMMON_WORDS", "EPONYMS", "EPONYM_HEADS", "EPONYM_MODIFIERS", "PROTECTED_PHRASE"]


def _words(block: str) -> frozenset[str]:
    return frozenset(w.lower() for w in block.split())


EPONYMS = _words("""
Parkinson Parkinsons Hodgkin Hodgkins Graves Crohn Crohns Alzheimer Alzheimers Down Cushing Addison Wilson
Bell Barrett Hashimoto Kaposi Paget Raynaud Sjogren Sjögren Tourette Wernicke Korsakoff Broca Babinski
Murphy Homan Homans Foley Swan Ganz Swan-Ganz Glasgow Apgar Huntington Gehrig Guillain Barre Barré Bence
Colles Monteggia Galeazzi Salter Lisfranc Maisonneuve Segond Bankart Sachs Hill-Sachs Meckel Whipple
Nissen Hartmann Billroth Kocher Pfannenstiel McBurney Rovsing Cullen Trousseau Chvostek Virchow Kussmaul
Cheyne Brugada Mobitz Wenckebach Kerley Fleischner Ranson Gleason Breslow Bosniak Fazekas Hounsfield
Doppler Valsalva Trendelenburg Seldinger Mallory Zenker Schatzki Boerhaave Budd Chiari Dandy Sturge
Lindau Recklinghausen Ewing Wilms Burkitt Krukenberg Klatskin Pancoast Horner Kawasaki Takayasu Behcet
Behçet Wegener Churg Goodpasture Henoch Schonlein Schönlein Reiter Marfan Ehlers Danlos Klinefelter
Osgood Schlatter Perthes Scheuermann Kienbock Kienböck Freiberg Tietze Dupuytren Peyronie Ledderhose
Brodie Charcot Erb Klumpke Duchenne Zollinger Ellison Curling Dieulafoy Hirschsprung Menetrier Peutz
Jeghers Caroli Crigler Najjar Kayser Fleischer Banti Laennec Couinaud Riedel Morison Henle
Langerhans Schlemm Treitz Oddi Vater Fallot Corti Wirsung Santorini Monro Sylvius Luschka Magendie Sezary
Sézary Sternberg Auer Pelger Huet Rigler Westermark Kommerell Ebstein Eisenmenger Fontan Blalock Taussig
Rastelli Jatene Bentall DeBakey Judkins Amplatz Hickman Broviac Groshong Malecot Penrose Dobhoff
Sengstaken Blakemore Kirschner Steinmann Ilizarov Kuntscher Schatzker Gustilo Tillaux Hoffa Kager Haglund
Lachman McMurray Phalen Tinel Finkelstein Adson Romberg Kernig Brudzinski Lhermitte Uhthoff
Parinaud Rinne Hallpike Epley Meniere Ménière Schwann Creutzfeldt Jakob Lewy Binswanger Moyamoya Galen
Adamkiewicz Retzius Guyon Scarpa Hesselbach Littre Amyand Spigelian Bochdalek Morgagni Noonan Beckwith
Wiedemann Prader Willi Angelman Rett Patau Gaucher Niemann Fabry Pompe Hurler Sanfilippo Morquio Krabbe
Canavan Zellweger Menkes Lesch Nyhan McArdle Fanconi Bartter Gitelman Liddle Alport Kimmelstiel Rokitansky
Asherman Leventhal Meigs Sertoli Leydig Nabothian Bartholin Skene Fournier Lichtenstein Shouldice Bassini
Puestow Toupet Heller Lembert Courvoisier Mirizzi Bouveret Osler Rendu Janeway Quincke Corrigan Duroziez
Traube Musset Dressler Prinzmetal Takotsubo Tako-tsubo Osborn Killip Framingham Ghon Lemierre Kiesselbach
Waldeyer Rosenmuller Eustachian Plummer Vinson Descemet Stargardt Leber Basedow Quervain Sheehan
Waterhouse Friderichsen Rathke Kallmann Sipple Wermer McCune Albright Codman Ollier Maffucci Gorham
Merkel Marjolin Spitz Lisch Koplik Nikolsky Auspitz Koebner Darier Gottron Buerger Leriche Felty Heberden
Bouchard Jaccoud Libman Lofgren Löfgren Heerfordt Mikulicz Pickwickian Mendelson Hamman Loeffler Löffler
Kartagener Munchausen Capgras Cotard Gerstmann Kluver Klüver Bucy Jacksonian Lennox Gastaut Dravet
Bourneville Gorlin Cowden Turcot Fraumeni Cockayne Blackfan Wiskott Aldrich DiGeorge Bruton Chediak
Higashi Kostmann Glanzmann Soulier Willebrand Waldenstrom Waldenström Pappenheimer Dohle Döhle Donath
Landsteiner Ziehl Neelsen Giemsa Papanicolaou Warthin Grocott Gomori Verhoeff Epstein Coxsackie Chagas
Legionnaires Kikuchi Castleman Rosai Dorfman Erdheim Letterer Siwe Schuller Schüller Madelung Karnofsky
Zubrod Dubowitz Leopold Naegele Braxton Chadwick Hegar Couvelaire Wharton Spalding Meiboom
Schmorl Baastrup Bertolotti Klippel Feil Trenaunay Sprengel Kummell Kümmell Forestier Modic Pfirrmann
Meyerding Risser Tarlov Sequard Séquard Brown-Sequard Brown-Séquard Joubert Aicardi Heschl Papez Fahr
Hallervorden Spatz Marchiafava Bignami Drager Friedreich Bickerstaff Devic Schilder Pelizaeus Merzbacher
Kearns Sayre Susac Sneddon Tolosa Gradenigo Benedikt Gubler Wallenberg Dejerine Roussy Balint Adie
Argyll Tenon Wolff Lown Ganong Pott Ludwig Rolando Sylvian Rolandic Mayfield Luque
Jewett Macintosh Pigtail Coude Coudé Groshong Bakri Jackson-Pratt Salem Levin Greenfield Fogarty
Tenckhoff Quinton Mahurkar Permcath Port-a-cath Portacath Ommaya Pleurx Hemovac Ambu Yankauer 
Metzenbaum Mayo Allis Babcock Bovie Tegaderm Kerlix Jamshidi Chiba Tru-cut Trucut Cope Malecot Stamm
Hasson Veress Ringer Ringers Hartmann Betadine Dakin Xeroform Unna
""")

# Nouns that make the word before them an eponym: "Graves disease", "Jones fracture".
EPONYM_HEADS = _words("""
disease diseases syndrome syndromes sign signs fracture fractures procedure procedures operation repair
maneuver manoeuvre maneuvers test tests score scores scale scales classification classifications grade
grading criteria criterion lymphoma sarcoma tumor tumors tumour cyst cysts palsy reflex reflexes
phenomenon triad tetrad ulcer ulcers node nodes duct ducts canal canals line lines catheter catheters tube
tubes esophagus oesophagus diverticulum pouch fundoplication anomaly malformation deformity disorder
dementia encephalopathy aphasia area areas space spaces body bodies cell cells angle index method
technique position view views stage staging type variant lesion lesions nodule hernia ligament fascia
membrane layer artery vein valve thyroiditis ophthalmopathy orbitopathy chromosome virus drain drains
needle blade forceps retractor clamp splint brace collar shunt filter incision approach ring rings
pearl pearls spot spots hump knob sail dots stripe unit units effect law curve ratio triangle fossa
foramen gland glands tubercle process capsule crypts plexus patches islands islets lymphadenopathy
cardiomyopathy anemia anaemia neuroma neuralgia neuropathy contracture node esophagitis gastritis colitis
ileitis nephritis arthritis arteritis vasculitis dystrophy myopathy ataxia chorea tremor pattern patterns
sequence sequences coma solution dressing retractor stitch suture knot hold sheath port device valve
bundle circle loop organ tract nerve nucleus zone cartilage rule rules formula protocol equation mask
trocar bag system hypothesis paralysis phenomena response fibers fibres lymphoma leukemia carcinoma
finger fingers fingertip fingertips
""")

# Words before a name word that make it an eponym: "positive Murphy", "modified Barium".
EPONYM_MODIFIERS = _words("positive negative modified classic classical reverse inverted atypical")

# Anatomical "X of <Name>" phrases: "pouch of Douglas", "circle of Willis", "ampulla of Vater".
PROTECTED_PHRASE = re.compile(
    r"\b(?i:pouch|circle|loop|islets?|canal|ligament|sphincter|ampulla|tetralogy|organ|ducts?|foramen|"
    r"aqueduct|bundle|angle|space|vein|artery|triangle|fossa|nodes?|cells?|body|bodies|column|crypts?|"
    r"glands?|tubercle|layer|membrane|line|plexus|nucleus|zone|pentalogy|trilogy|bands?)\s+(?i:of)\s+"
    r"(?:[A-Z][a-z]+(?:[- ][A-Z][a-z]+)?)"
)

COMMON_WORDS = _words("""
a an the this that these those there here he she his her hers him they them their it its we our us you
your i me my mine who whom whose which what when where why how all any both each few more most other some
such no nor not only own same so than too very can will just should now is are was were be been being
have has had having do does did doing would could may might must shall and but if or because as until
while of at by for with about against between into through during before after above below to from up
down in out on off over under again further then once per via vs versus also however therefore thus
patient patients pt pts history hx findings finding impression impressions indication indications
technique techniques comparison comparisons exam exams examination procedure procedures report reports
clinical clinically diagnosis diagnoses dx ddx differential assessment plan recommendation
recommendations recommend recommended consider considered correlation correlate note notes addendum final
preliminary result results lab labs laboratory summary conclusion conclusions discussion background
medications medication meds allergies allergy social family surgical past medical present illness hpi
ros review systems physical vitals vital signs status chief complaint cc reason request requested order
ordered ordering referring referral attending resident fellow physician physicians doctor doctors dr
nurse nurses radiologist radiologists radiology department dept hospital clinic medical center service
services unit ward floor room bed emergency ed er icu micu sicu ccu picu nicu or pacu ob gyn ent gi
md do rn np pa phd mbbs frcr facr rt crna dnp pharmd lpn cna mrn dob age sex name names id number no
account accession study studies series image images imaging views view frontal lateral oblique ap pa
portable upright supine prone decubitus axial coronal sagittal ct cta mri mr mra pet spect xr cxr us
ultrasound sonography sonogram echo echocardiogram ekg ecg eeg emg x-ray xray radiograph radiographs
fluoroscopy mammogram mammography angiogram angiography contrast iv oral enhanced unenhanced noncontrast
without with weighted t1 t2 flair dwi adc swi gre stir bone window windows soft tissue lung lungs
chest abdomen abdominal pelvis pelvic head neck brain spine spinal cervical thoracic lumbar sacral
heart cardiac liver hepatic kidney kidneys renal spleen splenic pancreas pancreatic bladder gallbladder
bowel colon stomach esophagus esophageal aorta aortic artery arteries vein veins venous arterial breast
breasts thyroid prostate uterus ovary ovaries adrenal adrenals lymph node nodes skin bone bones joint
joints knee hip shoulder elbow wrist ankle foot hand hands feet leg legs arm arms skull sinus sinuses
orbit orbits mediastinum mediastinal pleura pleural pericardium pericardial hilum hilar airway trachea
left right bilateral bilaterally unilateral anterior posterior superior inferior medial distal proximal
central peripheral upper lower mid middle apex base basal apical normal abnormal unremarkable stable
unchanged improved improving worsening worse better new old prior previous previously recent acute
chronic subacute mild mildly moderate moderately severe severely small large tiny minimal marked
significant slight trace diffuse focal multifocal scattered patchy nodular linear round oval
heterogeneous homogeneous hyperdense hypodense isodense hyperintense hypointense enhancing enhancement
mass masses nodule nodules lesion lesions cyst cysts opacity opacities consolidation effusion effusions
edema atelectasis pneumonia pneumothorax fracture fractures dislocation hemorrhage hematoma infarct
infarction ischemia stroke tumor tumors cancer carcinoma metastasis metastases metastatic malignancy
malignant benign infection inflammation abscess obstruction stenosis aneurysm dissection thrombosis
embolism emboli thrombus calcification calcifications calcified degenerative disease diseases syndrome
disorder sign signs symptom symptoms pain fever cough dyspnea shortness breath nausea vomiting
diarrhea weakness fatigue headache trauma fall injury follow followup follow-up up return discharge
discharged admitted admission transfer transferred seen evaluated examined treated noted noting shows
showing demonstrates demonstrated reveals revealed identified suggest suggests suggesting suggestive
compatible consistent likely unlikely possible possibly probable probably suspected suspicious concern
concerning cannot excluded exclude excluding rule ruled evidence no none negative positive present
absent seen visualized visible identified measuring measures measured mm cm ml mg kg hu units
male female man woman boy girl child infant gentleman lady year years yo old month months week weeks
day days hour hours today yesterday tomorrow morning evening night daily weekly monthly annual
january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday jan feb mar apr jun jul aug sep sept oct nov dec
signed electronically dictated transcribed verified reviewed approved interpreted read reading
attending staff team surgery surgeon surgeons oncology cardiology neurology neurosurgery orthopedics
pediatrics medicine internal primary care pcp home nursing facility snf rehab hospice
mother father wife husband son daughter sister brother spouse partner family friend caregiver guardian
parent parents children kids sibling siblings aunt uncle cousin grandmother grandfather niece nephew
contact phone fax pager email address city state zip county country street avenue road
please call thank thanks regards sincerely dear cc bcc copy sent to re subject date time
yes ok okay well good fair poor stable critical serious alert oriented awake responsive
protocol sequence sequences slice slices reformats reconstructions mpr mip vr dose dlp ctdi kv mas
technologist tech sonographer therapist pharmacist dietitian coordinator manager director chief
associates group practice partners llc inc pc pllc university college school institute foundation
specimen pathology cytology biopsy frozen section margin margins grade stage
positive negative intact preserved maintained patent occluded dilated distended collapsed
distribution involving involvement extending extension adjacent surrounding within along across
compared comparison interval since stability progression regression resolution resolved
further additional dedicated recommend clinical correlation advised suggested warranted
english spanish interpreter language
film films plain radiographic elevated decreased increased low high level levels test tests
""")
