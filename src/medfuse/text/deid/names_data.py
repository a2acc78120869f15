"""Word lists of personal names: common first names and surnames (US census and international).

The lists serve two purposes: finding names that appear without a title or label, and drawing
surrogate names. Words that are also common English words (``Will``, ``Hope``, ``Brown``, ``Stone``)
are listed in ``AMBIGUOUS_*``: on their own they are not taken for names, only next to another
name word or in a naming context.
"""

from __future__ import annotations

__all__ = ["AMBIGUOUS_FIRST", "AMBIGUOUS_LAST", "FIRST_NAMES", "LAST_NAMES", "NAME_PARTICLES", "SPELLINGS"]


# Each listed name as it is spelled ("mccoy" -> "McCoy"), for writing surrogates.
SPELLINGS: dict[str, str] = {}


def _words(block: str) -> frozenset[str]:
    for word in block.split():
        SPELLINGS.setdefault(word.lower(), word)
    return frozenset(w.lower() for w in block.split())


FIRST_NAMES = _words("""
James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel Matthew Anthony
Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey Ryan
Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander
Frank Patrick Raymond Jack Dennis Jerry Tyler Aaron Jose Adam Nathan Henry Douglas Zachary Peter Kyle
Ethan Walter Noah Jeremy Christian Keith Roger Terry Gerald Harold Sean Austin Carl Arthur Lawrence Dylan
Jesse Jordan Bryan Billy Joe Bruce Gabriel Logan Albert Willie Alan Juan Wayne Elijah Randy Roy Vincent
Ralph Eugene Russell Bobby Mason Philip Louis Harry Howard Fred Ernest Martin Craig Stanley Shawn Travis
Leonard Earl Jimmy Dale Luis Carlos Miguel Jorge Pedro Manuel Ricardo Francisco Alejandro Diego Javier
Rafael Fernando Sergio Eduardo Hector Ramon Mohammed Muhammad Ahmed Ali Omar Hassan Ibrahim Yusuf Tariq
Wei Li Jun Hiroshi Takeshi Kenji Yuki Raj Arjun Vikram Rahul Sanjay Amit Ravi Suresh Kwame Kofi Chinedu
Oluwaseun Tunde Dmitri Ivan Sergei Andrei Pavel Lukas Stefan Hans Klaus Pierre Jean Luc Marco Giovanni
Luca Matteo Sven Lars Anders Nils Olaf Connor Liam Owen Evan Ian Colin Neil Graham Trevor Derek Marcus
Darnell Jamal Tyrone Malik Andre Cedric Reginald Terrence Dwayne Rodney Leroy Calvin Clarence Herbert
Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Margaret
Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah Stephanie Rebecca Sharon
Laura Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela Emma Nicole Helen Samantha Katherine
Christine Debra Rachel Carolyn Janet Catherine Maria Heather Diane Ruth Julie Olivia Joyce Virginia
Victoria Kelly Lauren Christina Joan Evelyn Judith Megan Andrea Cheryl Hannah Jacqueline Martha Gloria
Teresa Ann Sara Madison Frances Kathryn Janice Jean Abigail Alice Judy Sophia Denise Doris Marilyn Danielle
Beverly Isabella Theresa Diana Natalie Brittany Charlotte Marie Kayla Alexis Lori Ava Mia Chloe Zoe
Ella Grace Lily Harper Avery Sofia Camila Valentina Lucia Carmen Rosa Ana Isabel Guadalupe Mariana Gabriela
Daniela Fernanda Ximena Fatima Aisha Layla Zainab Mariam Noor Yasmin Mei Ling Xiu Yan Hui Sakura Yuko
Keiko Priya Ananya Deepa Lakshmi Sunita Kavya Ngozi Amara Chiamaka Adaeze Olga Svetlana Natasha Irina
Tatiana Ingrid Astrid Greta Heidi Sabine Claudia Monique Camille Chiara Giulia Francesca Siobhan Aoife
Maeve Niamh Bridget Colleen Eileen Maureen Agnes Mildred Edna Ethel Gladys Irene Lillian Louise Norma
Phyllis Thelma Vera Wanda Yolanda Latoya Keisha Tamika Shanice Ebony Tanisha Jasmine Destiny Aaliyah
Tiffany Crystal Amber Erica Erin Holly Jill Kristen Leah Meredith Molly Paige Tara Vanessa Whitney
Will May Mark Grace Hope Faith Joy Bill Art Rose June Dawn Summer Page Chase Hunter April August Autumn
Iris Ivy Jade Pearl Ruby Violet Sky Bud Buck Clay Dean Drew Glen Guy Jay Lance Rich Rusty Sandy Stormy
""")

# First names that are also everyday or clinical words: never a name on their own.
AMBIGUOUS_FIRST = _words("""
Will May Mark Grace Hope Faith Joy Bill Art Rose June Dawn Summer Page Chase Hunter April August Autumn
Iris Ivy Jade Pearl Ruby Violet Sky Bud Buck Clay Dean Drew Glen Guy Jay Lance Rich Rusty Sandy Stormy
Christian Jordan Virginia Carmen Georgia Sterling Frank Joe Li Jun Yan Ali Jean Ann Amber Crystal Destiny
Austin Madison Charlotte Victoria Mason Owen Marie Harper Avery Sofia Lucia Isabel Wayne Earl Neil Dale
""")

LAST_NAMES = _words("""
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson
Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis
Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall
Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes
Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard
Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price
Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell
Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton
Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar
Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells
Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez
Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone
Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan
Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce Vazquez Hansen Peters Santos Hart Bradley
Knight Elliott Cunningham Duncan Armstrong Hudson Carroll Lane Riley Andrews Alvarado Ray Delgado Berry
Perkins Hoffman Johnston Matthews Pena Richards Contreras Willis Carpenter Lawrence Sandoval Guerrero
George Chapman Rios Estrada Ortega Watkins Greene Nunez Wheeler Valdez Harper Burke Larson Santiago
Maldonado Morrison Franklin Carlson Austin Dominguez Carr Lawson Jacobs O'Brien Lynch Singh Vega Bishop
Montgomery Oliver Jensen Harvey Williamson Gilbert Dean Sims Espinoza Howell Li Wong Reid Hanson Le
McCoy Garrett Burton Fuller Wang Weber Welch Rojas Lucas Marquez Fields Park Yang Little Banks Padilla Day
Walsh Bowman Schultz Luna Fowler Mejia Davidson Acosta Brewer May Holland Juarez Newman Pearson Curtis
Cortez Douglas Schneider Joseph Barrett Navarro Figueroa Keller Avila Wade Molina Stanley Hopkins Campos
Barnett Bates Chambers Caldwell Beck Lambert Miranda Byrd Craig Ayala Lowe Frazier Powers Neal Leonard
Gregory Carrillo Sutton Fleming Rhodes Shelton Schwartz Norris Jennings Watts Duran Walters Cohen McDaniel
Moran Parks Steele Vaughn Becker Holt DeLeon Barker Terry Hale Leon Hail Benson Haynes Horton Miles Lyons
Pham Graves Bush Thornton Wolfe Warner Cabrera McKinney Mann Zimmerman Dawson Lara Fletcher Page McCarthy
Love Robles Cervantes Solis Erickson Reeves Chang Klein Salinas Fuentes Baldwin Daniel Simon Velasquez
Hardy Higgins Aguirre Lin Cummings Chandler Sharp Barber Bowen Ochoa Dennis Robbins Liu Ramsey Francis
Griffith Paul Blair O'Connor Cardenas Pacheco Cross Calderon Quinn Moss Swanson Chan Rivas Khan Rodgers
Serrano Fitzgerald Rosales Stevenson Christensen Manning Gill Curry McLaughlin Harmon McGee Gross Doyle
Garner Newton Burgess Reese Walton Blake Trujillo Adkins Brady Goodman Roman Webster Goodwin Fischer Huang
Potter DelaCruz Montoya Todd Wu Hines Mullins Castaneda Malone Cannon Tate Mack Sherman Hubbard Hodges
Zhang Guerra Wolf Valencia Saunders Franco Rowe Gallagher Farmer Hammond Hampton Townsend Ingram Wise
Gallegos Clarke Barton Schroeder Maxwell Waters Logan Camacho Strickland Norman Person Colon Parsons Frank
Harrington Glover Osborne Buchanan Casey Floyd Patton Ibarra Ball Tyler Suarez Bowers Orozco Salas Cobb
Gibbs Andrade Bauer Conner Moody Escobar McGuire Lloyd Mueller Hartman French Kramer McBride Pope Lindsey
Velazquez Norton McCormick Sparks Flynn Yates Hogan Marsh Macias Villanueva Zamora Pratt Stokes Owen
Ballard Lang Brock Villarreal Charles Drake Barrera Cain Patrick Pineda Burnett Mercado Santana Shepherd
Bautista Ali Shaffer Lamb Trevino McKenzie Hess Beil Olsen Cochran Morton Nash Wilkins Petersen Briggs
Shah Roth Nicholson Holloway Lozano Rangel Flowers Hoover Short Arias Mora Valenzuela Bryan Meyers
Weiss Underwood Bass Greer Summers Houston Carson Morrow Clayton Whitaker Decker Yoder Collier Zuniga
Carey Wilcox Melendez Poole Roberson Larsen Conley Davenport Copeland Massey Lam Huff Rocha Cameron
Jefferson Hood Monroe Anthony Pittman Huynh Randall Singleton Kirk Combs Mathis Christian Skinner Bradford
Richard Galvan Wall Boone Kirby Wilkinson Bridges Bruce Atkinson Velez Meza Roy Vincent York Hodge Villa
Abbott Allison Tapia Gates Chase Sosa Sweeney Farrell Wyatt Dalton Horn Barron Phelps Yu Dickerson Heath
Foley Atkins Mathews Bonilla Acevedo Benitez Zavala Hensley Glenn Cisneros Harrell Shields Rubio Huffman
Choi Boyer Garrison Arroyo Bond Kane Hancock Callahan Dillon Cline Wiggins Grimes Arellano Melton O'Neill
Savage Ho Beltran Pitts Parrish Ponce Rich Booth Koch Golden Ware Brennan McDowell Marks Cantu Humphrey
Baxter Sawyer Clay Tanner Hutchinson Kaur Berg Wiley Gilmore Russo Villegas Hobbs Keith Wilkerson Ahmed
Beard McClain Montes Mata Rosario Vang Walter Henson O'Donnell Kowalski Nowak Novak Kowalczyk Wisniewski
Okafor Okonkwo Adeyemi Mensah Osei Mbeki Tanaka Suzuki Sato Watanabe Yamamoto Nakamura Kobayashi Sharma
Gupta Kumar Reddy Iyer Nair Chowdhury Rahman Hussain Haddad Nasser Khoury Cohen Levi Friedman Goldberg
Rossi Russo Ferrari Esposito Bianchi Romano Ricci Muller Schmitt Schulz Hoffmann Kruger Dubois Laurent
Lefebvre Moreau Girard Bernard Petit Durand Jansen Visser Bakker Johansson Andersson Nilsson Larsson
Eriksson Hansen Popescu Ivanov Petrov Smirnov Volkov Kuznetsov Papadopoulos Yilmaz Demir Kaya
""")

# Surnames that are also everyday, clinical or place words: never a name on their own.
AMBIGUOUS_LAST = _words("""
Brown White Green Black Young King Hill Wood Gray Long Little Rich Bell Graves Ward Wells Mason Cook
Baker Rose Stone Lane West Park Price Cross Hunt Fox Bush Rice Frank May Page Love Day Banks Chase Cole
Dean Ford Golden Marsh Short Strong Sharp Moss Hood Wall Ball Bass Gross Hale Hail Pope Drake Cain Flowers
Sparks Powers Fields Waters Mills Woods Holmes Booth Bond Marks Clay Wise Person Mack Norman French Glenn
Carter Parker Turner Bishop Miles Chandler Gates Kirk Horn Heath Lamb Nash Miranda Berry Rhodes Houston
Jordan George Henry James Thomas Lewis Paul Simon Daniel Joseph Charles Anthony Francis Vincent Patrick
Christian Douglas Lawrence Austin Carroll Dennis Gilbert Gordon Grant Harvey Howard Jackson Jefferson
Lincoln Logan Monroe Murray Russell Stanley Tyler Walter Warren Washington Wilson Murphy Foley Barrett
Down Payne Burns Sharp Little Small Good Best Hope Joy Faith Summer Winter Snow Frost Storm Rain Moody
Le Li Lee Ho Yu Lin Lam Lu Ma Mo Roy Ray Kelly Troy Wade Pierce Ross Mann Klein Weiss Lang Newman Hart
Keller Koch Vance Boyd Jennings Singleton Hudson Cameron Carson Clayton Dalton Dallas Phoenix Orlando
Hampton Weber Morton Homan
""")

# Lower-case words that may sit inside a name: "Ludwig van Beethoven", "Maria de la Cruz".
NAME_PARTICLES = frozenset({"van", "von", "de", "der", "den", "del", "della", "di", "da", "la", "le", "du", "bin", "ibn", "al", "el"})
