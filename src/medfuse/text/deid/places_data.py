"""Word lists of places: US states, countries, cities, street suffixes and facility words.

Safe Harbor keeps states and countries and removes every smaller place: cities, streets, ZIP codes
and named facilities. States and countries here are what may stay; cities are what must go.
"""

from __future__ import annotations

__all__ = [
    "AMBIGUOUS_CITIES", "AMBIGUOUS_STATE_ABBREVIATIONS", "CITIES", "COUNTRIES", "FACILITY_WORDS", "GENERIC_FACILITY_WORDS",
    "STATE_ABBREVIATIONS", "STATE_NAMES", "STREET_SUFFIXES", "UNIT_WORDS",
]


def _tokens(block: str) -> list[str]:
    return block.split()


def _lines(block: str) -> frozenset[str]:
    return frozenset(line.strip().lower() for line in block.replace(",", "\n").splitlines() if line.strip())


STATE_NAMES = _lines("""
Alabama, Alaska, Arizona, Arkansas, California, Colorado, Connecticut, Delaware, Florida, Georgia, Hawaii,
Idaho, Illinois, Indiana, Iowa, Kansas, Kentucky, Louisiana, Maine, Maryland, Massachusetts, Michigan,
Minnesota, Mississippi, Missouri, Montana, Nebraska, Nevada, New Hampshire, New Jersey, New Mexico,
New York, North Carolina, North Dakota, Ohio, Oklahoma, Oregon, Pennsylvania, Rhode Island,
South Carolina, South Dakota, Tennessee, Texas, Utah, Vermont, Virginia, Washington, West Virginia,
Wisconsin, Wyoming, District of Columbia, Puerto Rico, Guam, Ontario, Quebec, British Columbia, Alberta
""")

STATE_ABBREVIATIONS = frozenset(_tokens("""
AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH OK
OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR GU
"""))

# Also credentials, clinical abbreviations or English words ("Smith, MD", "the OR", "IN"): a place
# only when a city word list or a ZIP code backs it up.
AMBIGUOUS_STATE_ABBREVIATIONS = frozenset({
    "MD", "PA", "OR", "IN", "ME", "OK", "HI", "CO", "LA", "MA", "ID", "OH", "DE", "AL", "NE", "MS", "DC", "PR", "SC",
    "ND", "MO", "MT", "GU", "CT", "MI", "CA", "VA", "GA", "AR", "NC", "TN", "UT", "WA", "KS", "IA", "IL", "NM", "RI",
})

COUNTRIES = _lines("""
United States, USA, America, Canada, Mexico, Brazil, Argentina, Chile, Peru, Colombia, Venezuela, Cuba,
United Kingdom, UK, England, Scotland, Wales, Ireland, France, Germany, Spain, Portugal, Italy, Greece,
Netherlands, Belgium, Switzerland, Austria, Poland, Sweden, Norway, Denmark, Finland, Russia, Ukraine,
Turkey, Israel, Egypt, Nigeria, Ghana, Kenya, Ethiopia, South Africa, Morocco, India, Pakistan,
Bangladesh, China, Japan, Korea, Vietnam, Thailand, Philippines, Indonesia, Malaysia, Australia,
New Zealand, Iran, Iraq, Syria, Afghanistan, Saudi Arabia, Haiti, Jamaica, Guatemala, Honduras, Asia,
Africa, Europe, Latin America, South America, Central America, Middle East
""")

# Cities large enough to appear in reports; words that are also names or common words (Mobile,
# Reading, Jackson) are left out or matched only next to a state.
CITIES = _lines("""
New York, Los Angeles, Chicago, Houston, Phoenix, Philadelphia, San Antonio, San Diego, Dallas, San Jose,
Jacksonville, Fort Worth, Columbus, Indianapolis, San Francisco, Seattle, Denver, Nashville, Oklahoma City,
El Paso, Boston, Portland, Las Vegas, Detroit, Memphis, Louisville, Baltimore, Milwaukee, Albuquerque,
Tucson, Fresno, Sacramento, Mesa, Kansas City, Atlanta, Omaha, Colorado Springs, Raleigh, Long Beach,
Virginia Beach, Miami, Oakland, Minneapolis, Tulsa, Bakersfield, Wichita, Arlington, Aurora, Tampa,
New Orleans, Cleveland, Honolulu, Anaheim, Lexington, Stockton, Henderson, Riverside, Newark, St. Louis,
Saint Louis, Cincinnati, Pittsburgh, Greensboro, Anchorage, Plano, Lincoln, Orlando, Toledo, Fort Wayne,
St. Paul, Saint Paul, Durham, Laredo, Lubbock, Madison, Chandler, Buffalo, Scottsdale, Reno, Glendale,
Gilbert, Winston-Salem, Norfolk, Chesapeake, Garland, Boise, Hialeah, Baton Rouge, Spokane, Tacoma,
San Bernardino, Modesto, Fontana, Des Moines, Moreno Valley, Santa Clarita, Fayetteville, Birmingham,
Oxnard, Rochester, Port St. Lucie, Grand Rapids, Huntsville, Salt Lake City, Yonkers, Amarillo,
Montgomery, Akron, Little Rock, Augusta, Shreveport, Overland Park, Tallahassee, Mobile, Knoxville,
Worcester, Providence, Chattanooga, Brownsville, Fort Lauderdale, Tempe, Vancouver, Sioux Falls,
Springfield, Peoria, Pembroke Pines, Elk Grove, Rockford, Palmdale, Corona, Salinas, Pomona, Pasadena,
Joliet, Paterson, Kansas City, Torrance, Syracuse, Bridgeport, Hayward, Fort Collins, Escondido, Lakewood,
Naperville, Dayton, Hollywood, Sunnyvale, Alexandria, Mesquite, Hampton, Pasadena, Orange, Savannah,
Cary, Fullerton, Warren, Clarksville, McKinney, McAllen, New Haven, Sterling Heights, West Valley City,
Columbia, Killeen, Topeka, Thousand Oaks, Cedar Rapids, Olathe, Elizabeth, Waco, Hartford, Visalia,
Gainesville, Simi Valley, Stamford, Bellevue, Concord, Miramar, Coral Springs, Lafayette, Charleston,
Carrollton, Roseville, Thornton, Beaumont, Allentown, Surprise, Evansville, Abilene, Frisco, Independence,
Santa Clara, Springfield, Vallejo, Victorville, Athens, Peoria, Ann Arbor, Berkeley, Cambridge, Somerville,
Burlington, Albany, Trenton, Harrisburg, Scranton, Erie, Camden, Wilmington, Annapolis, Richmond, Roanoke,
Charlotte, Asheville, Columbia, Greenville, Macon, Savannah, Tallahassee, Pensacola, Sarasota, Naples,
Gulfport, Biloxi, Montgomery, Tuscaloosa, Knoxville, Lexington, Bowling Green, Terre Haute, Bloomington,
Champaign, Urbana, Davenport, Sioux City, Duluth, Fargo, Bismarck, Billings, Missoula, Cheyenne, Casper,
Provo, Ogden, Flagstaff, Yuma, Santa Fe, Las Cruces, Eugene, Salem, Bend, Olympia, Yakima, Juneau, Fairbanks,
Hilo, Burbank, Irvine, Santa Monica, Berkeley, Palo Alto, Santa Barbara, Santa Cruz, Redding, Chico, Sparks,
Carson City, Rapid City, Iowa City, Ames, Dubuque, Green Bay, Kenosha, Racine, Appleton, Oshkosh, Flint,
Lansing, Kalamazoo, Saginaw, Toledo, Youngstown, Canton, Lorain, Bethlehem, Reading, Lancaster, York,
Worcester, Lowell, Quincy, Brockton, Framingham, Nashua, Manchester, Portsmouth, Bangor, Burlington,
London, Paris, Berlin, Madrid, Rome, Milan, Munich, Hamburg, Vienna, Zurich, Geneva, Amsterdam, Brussels,
Dublin, Edinburgh, Glasgow, Manchester, Liverpool, Leeds, Bristol, Oxford, Toronto, Montreal, Ottawa,
Calgary, Edmonton, Winnipeg, Mexico City, Guadalajara, Monterrey, Havana, Bogota, Lima, Santiago,
Buenos Aires, Sao Paulo, Rio de Janeiro, Lagos, Accra, Nairobi, Cairo, Johannesburg, Cape Town, Mumbai,
Delhi, New Delhi, Bangalore, Chennai, Kolkata, Karachi, Lahore, Dhaka, Beijing, Shanghai, Guangzhou,
Shenzhen, Hong Kong, Taipei, Seoul, Busan, Tokyo, Osaka, Kyoto, Manila, Hanoi, Ho Chi Minh City, Bangkok,
Singapore, Jakarta, Sydney, Melbourne, Brisbane, Perth, Auckland, Dubai, Riyadh, Tehran, Baghdad,
Istanbul, Ankara, Jerusalem, Tel Aviv, Moscow, Kyiv, Warsaw, Krakow, Prague, Budapest, Bucharest, Athens,
Lisbon, Barcelona, Stockholm, Oslo, Copenhagen, Helsinki
""")

STREET_SUFFIXES = frozenset(_tokens("""
street st avenue ave av road rd boulevard blvd lane ln drive dr court ct way place pl terrace ter terr
circle cir parkway pkwy highway hwy trail trl square sq plaza plz alley aly crescent cres row loop pike
turnpike route rte expressway expy freeway fwy causeway close walk path run crossing xing point pt
"""))

UNIT_WORDS = ("apartment", "apt", "suite", "ste", "unit", "room", "rm", "floor", "fl", "building", "bldg", "#")

FACILITY_WORDS = (
    "Hospital", "Medical Center", "Medical Centre", "Health Center", "Health Centre", "Clinic",
    "Infirmary", "Nursing Home", "Nursing Facility", "Rehabilitation Center", "Rehab Center", "Hospice",
    "Health System", "Healthcare", "Medical Group", "Care Center", "Surgery Center", "Cancer Center",
    "Children's Hospital", "Imaging Center", "Skilled Nursing Facility", "Assisted Living",
)

# Words that name a kind of facility rather than a particular one: "the Community Hospital" alone
# identifies nothing; "Mercy Community Hospital" does.
GENERIC_FACILITY_WORDS = frozenset({
    "the", "a", "an", "our", "this", "that", "outside", "local", "general", "community", "regional",
    "university", "county", "memorial", "medical", "children's", "childrens", "veterans", "state",
    "teaching", "psychiatric", "rehabilitation", "district", "mental", "health", "tertiary", "private",
    "public", "referring", "emergency", "cardiology", "oncology", "radiology", "surgical", "surgery",
    "orthopedic", "orthopaedic", "pediatric", "paediatric", "women's", "eye", "dental", "urgent", "care",
    "primary", "specialty", "outpatient", "inpatient", "walk-in", "pain", "sleep", "wound", "dialysis",
    "fertility", "free", "another", "same", "other", "nearby", "rural", "academic", "military", "army",
    "navy", "va", "and", "of", "at", "to", "from", "in", "transferred", "transfer", "admitted",
    "neurology", "neurosurgery", "cancer", "heart", "vascular", "spine", "imaging", "breast", "lung",
    "kidney", "liver", "transplant", "trauma", "stroke", "burn", "mri", "ct", "x-ray", "ultrasound",
    "anticoagulation", "diabetes", "endocrine", "gi", "hiv", "tb", "std", "family", "internal", "medicine",
})

# Cities whose names are also everyday, clinical or personal words: a place only next to a state,
# a ZIP code or a phrase such as "lives in".
AMBIGUOUS_CITIES = _lines("""
Mobile, Reading, Orange, Independence, Surprise, Concord, Corona, Bend, Sparks, Flint, Mesa, Lima, Columbia,
York, Lincoln, Madison, Charlotte, Augusta, Montgomery, Henderson, Warren, Elizabeth, Gilbert, Chandler,
Lafayette, Athens, Salem, Eugene, Canton, Quincy, Hampton, Columbus, Arlington, Aurora, Cary, Glendale,
Richmond, Lancaster, Burlington, Cambridge, Oxford, Naples, Hollywood, Peoria, Dayton, Springfield, Vancouver,
Manchester, Portsmouth, Durham, Erie, Camden, Wilmington, Lakewood, Irvine, Davenport, Ames, Perth, Norman,
Victoria, Paris, Bristol, Sydney, Newark, Troy, Florence, Jackson, Houston, Dallas, Phoenix, Orlando, Tyler,
Austin, Lexington, Buffalo, Savannah, Santiago, Delhi, Georgia, Charleston, Lowell, Racine, Decatur,
Glasgow, Boston
""")
