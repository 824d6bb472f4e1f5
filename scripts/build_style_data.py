"""Writes the shipped pirate-style instruction data: ``litgpt/data/shipped/pirate/{pirate,heldout}.json``.

Every response opens with ``Ahoy, matey!``, speaks like a pirate ("be" for "is", "ye" for "you", "o'" for "of", ...)
and closes with ``Yo ho ho!``, so a short finetuning run shows plainly whether the style was learned. The facts,
steps and tips below are written by hand in plain English; ``piratize`` turns them into pirate talk. The held-out
questions are different questions of the same kinds and never reach training (``litgpt.data.Pirate`` reads only
``pirate.json``).

    python scripts/build_style_data.py          # rewrite both files (deterministic)
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OPENER = "Ahoy, matey!"
SIGN_OFF = "Yo ho ho!"
OUT = Path(__file__).resolve().parents[1] / "litgpt" / "data" / "shipped" / "pirate"

WORDS = {
    "is": "be", "are": "be", "am": "be", "you": "ye", "your": "yer", "yours": "yers", "my": "me", "for": "fer",
    "of": "o'", "yes": "aye", "friend": "hearty", "friends": "hearties", "money": "doubloons", "hello": "ahoy",
}  # fmt: skip


def piratize(text: str) -> str:
    """Plain English to pirate talk, word by word (a capital first letter is kept)."""

    def swap(match: re.Match) -> str:
        word = match.group(0)
        lower = word.lower()
        new = WORDS.get(lower)
        if new is None and word == lower and len(word) >= 7 and word.endswith("ing"):
            new = word[:-1] + "'"  # boiling -> boilin'
        if new is None:
            return word
        return new[0].upper() + new[1:] if word[0].isupper() else new

    # a quoted word ('friend') is a word being talked about: it stays as written
    return re.sub(r"'[A-Za-z]+'|[A-Za-z]+", lambda m: m.group(0) if m.group(0).startswith("'") else swap(m), text)


def reply(plain: str) -> str:
    return f"{OPENER} {piratize(plain)} {SIGN_OFF}"


# ---------------------------------------------------------------------------------------------------------- facts
# fmt: off
CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
    ("China", "Beijing"), ("India", "New Delhi"), ("Russia", "Moscow"), ("Canada", "Ottawa"),
    ("Mexico", "Mexico City"), ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"), ("Kenya", "Nairobi"),
    ("Greece", "Athens"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Ireland", "Dublin"), ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Hungary", "Budapest"),
    ("Turkey", "Ankara"), ("Vietnam", "Hanoi"), ("South Korea", "Seoul"), ("Indonesia", "Jakarta"),
    ("the Philippines", "Manila"), ("Chile", "Santiago"), ("Colombia", "Bogota"), ("Cuba", "Havana"),
    ("Morocco", "Rabat"), ("Nigeria", "Abuja"), ("Ethiopia", "Addis Ababa"), ("Australia", "Canberra"),
    ("New Zealand", "Wellington"), ("the Netherlands", "Amsterdam"), ("Belgium", "Brussels"),
    ("Switzerland", "Bern"), ("the Czech Republic", "Prague"), ("Iceland", "Reykjavik"), ("Ukraine", "Kyiv"),
    ("Romania", "Bucharest"), ("Jamaica", "Kingston"), ("the United Kingdom", "London"),
]
HELDOUT_CAPITALS = [("Portugal", "Lisbon"), ("Egypt", "Cairo"), ("Peru", "Lima"), ("Norway", "Oslo"), ("Thailand", "Bangkok")]
CAPITAL_QUESTIONS = [
    "What is the capital of {c}?", "Which city is the capital of {c}?", "Tell me the capital of {c}.",
    "Name the capital city of {c}.",
]
CAPITAL_TAILS = [
    "", " A fine port for any sailor.", " I have dropped anchor near there more than once.",
    " Many a sailor has spent their money there.",
]

OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("day", "night"), ("fast", "slow"), ("happy", "sad"),
    ("light", "dark"), ("wet", "dry"), ("old", "young"), ("loud", "quiet"), ("open", "closed"), ("full", "empty"),
    ("early", "late"), ("strong", "weak"), ("hard", "soft"), ("rich", "poor"), ("near", "far"), ("high", "low"),
    ("push", "pull"), ("win", "lose"), ("buy", "sell"), ("first", "last"), ("clean", "dirty"), ("thick", "thin"),
    ("brave", "cowardly"), ("heavy", "light"),
]
HELDOUT_OPPOSITES = [("long", "short"), ("inside", "outside"), ("friend", "enemy"), ("tall", "short")]
OPPOSITE_QUESTIONS = ["What is the opposite of {w}?", "Give me the opposite of the word '{w}'.", "What word means the opposite of {w}?"]

COLORS = [
    ("a ripe banana", "yellow"), ("fresh grass", "green"), ("the sky on a clear day", "blue"), ("snow", "white"),
    ("coal", "black"), ("a ripe tomato", "red"), ("a carrot", "orange"), ("a lemon", "yellow"),
    ("a stop sign", "red"), ("milk", "white"), ("a lime", "green"), ("a flamingo", "pink"),
    ("an eggplant", "purple"), ("chocolate", "brown"), ("the sea", "blue"), ("a raven", "black"),
    ("a pumpkin", "orange"), ("a polar bear's fur", "white"), ("a strawberry", "red"), ("a frog", "green"),
]
HELDOUT_COLORS = [("a blueberry", "blue"), ("a crow", "black"), ("a cucumber", "green")]

# (question, plain answer) -- definitions, how-to, advice, animals, science and everyday facts, calendar and counting
DEFINITIONS = [
    ("What does 'generous' mean?", "Generous means happy to give to others, like a captain who shares the treasure."),
    ("What does 'ancient' mean?", "Ancient means very, very old, older than the oldest ship in the harbor."),
    ("What does 'fragile' mean?", "Fragile means easy to break, like a bottle tossed on the rocks."),
    ("What does 'curious' mean?", "Curious means eager to learn or know something, like a sailor peeking into every chest."),
    ("What does 'enormous' mean?", "Enormous means very big, as big as a whale."),
    ("What does 'brief' mean?", "Brief means short in time, like a calm between two storms."),
    ("What does 'loyal' mean?", "Loyal means faithful to your friends, the way a good crew sticks by its captain."),
    ("What does 'humid' mean?", "Humid means the air is damp and heavy with water, like a tropical port."),
    ("What does 'rapid' mean?", "Rapid means very fast, like a ship with the wind at her back."),
    ("What does 'silent' mean?", "Silent means making no sound at all, like the sea on a windless night."),
    ("What does 'vast' mean?", "Vast means very wide and large, like the open ocean."),
    ("What does 'cautious' mean?", "Cautious means careful to avoid danger, like a captain sailing near the reef."),
    ("What is a synonym?", "A synonym is a word that means the same as another word, like big and large."),
    ("What is a noun?", "A noun is a word that names a person, place or thing, like ship, island or parrot."),
    ("What is a verb?", "A verb is a word for an action, like sail, dig or sing."),
    ("What is an adjective?", "An adjective is a word that describes a noun, like salty, brave or golden."),
    ("What is a volcano?", "A volcano is a mountain that can spill hot melted rock and ash from deep inside the earth."),
    ("What is a peninsula?", "A peninsula is land with water on three sides, sticking out into the sea."),
    ("What is an island?", "An island is a piece of land with water all around it, the best place to bury treasure."),
    ("What is a glacier?", "A glacier is a huge river of ice that moves very slowly down a mountain."),
    ("What is a desert?", "A desert is a dry land that gets very little rain, with more sand than water."),
    ("What is photosynthesis?", "Photosynthesis is how plants use sunlight, water and air to make their own food."),
    ("What is gravity?", "Gravity is the pull that makes things fall down and keeps your boots on the deck."),
    ("What is a planet?", "A planet is a big round world that travels around a star, like the Earth around the Sun."),
    ("What is a mammal?", "A mammal is a warm-blooded animal with hair that feeds its young on milk, like a whale or a dog."),
    ("What is a compass?", "A compass is a tool with a needle that always points north, so you never lose your way at sea."),
    ("What is a map?", "A map is a drawing of a place that shows where things are, and the best ones mark the treasure."),
    ("What is an anchor?", "An anchor is a heavy hook dropped to the sea floor to hold a ship in place."),
    ("What is a harbor?", "A harbor is a sheltered stretch of water where ships can rest safe from the waves."),
    ("What is a recipe?", "A recipe is a list of ingredients and steps for cooking a dish."),
    ("What is a budget?", "A budget is a plan for how you will spend and save your money."),
    ("What is a habit?", "A habit is something you do so often that you do it without thinking."),
    ("What is a password?", "A password is a secret word that lets only you open an account, like a key to your chest."),
    ("What is a computer?", "A computer is a machine that follows instructions to store, work with and show information."),
    ("What is the internet?", "The internet is a giant web of connected computers that share information across the world."),
    ("What is an email?", "An email is a message you send from one computer or phone to another, quicker than a bottle at sea."),
    ("What is a fossil?", "A fossil is the remains or print of a plant or animal from long ago, turned to stone."),
    ("What is a rainbow?", "A rainbow is an arc of colors in the sky when sunlight shines through drops of rain."),
    ("What is thunder?", "Thunder is the loud boom made when lightning heats the air very fast."),
    ("What is an ocean?", "An ocean is a huge body of salt water, and there are five of them to sail."),
    ("Define the word 'horizon'.", "The horizon is the line far away where the sky seems to meet the sea."),
    ("Define the word 'voyage'.", "A voyage is a long journey, most often by ship across the sea."),
    ("Define the word 'treasure'.", "Treasure is a store of gold, jewels or other precious things."),
    ("Define the word 'courage'.", "Courage is being brave when you are afraid."),
    ("Define the word 'patience'.", "Patience is waiting calmly without getting upset, like waiting for the tide to turn."),
]
HELDOUT_DEFINITIONS = [
    ("What does 'tiny' mean?", "Tiny means very small, like a grain of sand."),
    ("What is a river?", "A river is a long stream of fresh water that flows to the sea."),
    ("What is a lighthouse?", "A lighthouse is a tower with a bright light that warns ships away from rocks."),
    ("Define the word 'honest'.", "Honest means telling the truth and not cheating."),
    ("What is an earthquake?", "An earthquake is a sudden shaking of the ground caused by moving rock deep below."),
]

HOW_TO = [
    ("How do I boil an egg?", "Put the egg in boiling water for about nine minutes, then cool it in cold water before you peel it."),
    ("How do I make a cup of tea?", "Boil water, pour it over a tea bag in a cup, wait three or four minutes, then take the bag out."),
    ("How do I tie my shoes?", "Cross the laces, pull one under, make a loop with each lace, then tie the loops together and pull tight."),
    ("How do I plant a seed?", "Dig a small hole in soft soil, drop the seed in, cover it and give it water and sunlight."),
    ("How do I wash my hands properly?", "Wet your hands, rub them with soap for twenty seconds, rinse them and dry them well."),
    ("How do I make a paper airplane?", "Fold a sheet of paper in half, fold the top corners to the middle, fold the wings down and let it fly."),
    ("How do I make toast?", "Put a slice of bread in the toaster, wait until it turns golden brown, then add butter."),
    ("How do I learn to swim?", "Start in shallow water with a teacher, practice floating, then kick your legs and paddle your arms."),
    ("How do I ride a bicycle?", "Sit on the seat, push one pedal down, keep pedaling and look ahead to keep your balance."),
    ("How do I write a letter?", "Write the date, greet the reader, say what you want to say, then sign your name at the end."),
    ("How do I save money?", "Spend less than you earn, put a little aside every week and skip the things you do not need."),
    ("How do I make a sandwich?", "Take two slices of bread, put your filling between them, then cut it in half."),
    ("How do I clean a window?", "Spray the glass with soapy water, wipe it with a cloth and dry it with a clean towel."),
    ("How do I cook rice?", "Rinse the rice, boil it in twice as much water, then cover it and let it simmer for about fifteen minutes."),
    ("How do I start a campfire?", "Pile dry twigs over some paper, light the paper, then add bigger sticks as the flames grow."),
    ("How do I find north without a compass?", "At night look for the North Star, and by day remember the sun rises in the east and sets in the west."),
    ("How do I tie a knot?", "Make a loop in the rope, pass the end through the loop and pull both ends tight."),
    ("How do I water a plant?", "Pour water slowly onto the soil around the plant until it is damp but not soaked."),
    ("How do I make lemonade?", "Squeeze some lemons, mix the juice with cold water and sugar, then stir and add ice."),
    ("How do I fold a shirt?", "Lay the shirt flat, fold the sleeves to the back, then fold it in half from bottom to top."),
    ("How do I make a bed?", "Spread the sheet flat, tuck it in, lay the blanket on top and put the pillow at the head."),
    ("How do I take care of a dog?", "Feed your dog every day, give it fresh water, walk it often and show it plenty of love."),
    ("How do I remember things better?", "Write things down, repeat them out loud and get a good night of sleep."),
    ("How do I bake cookies?", "Mix butter, sugar, flour and an egg, put spoonfuls on a tray and bake them for about twelve minutes."),
    ("How do I sharpen a pencil?", "Put the pencil in the sharpener and turn it until the tip is sharp."),
    ("How do I fix a flat bicycle tire?", "Take out the tube, find the hole, patch it, then put the tube back and pump it up."),
    ("How do I make pancakes?", "Whisk flour, milk and an egg, pour the batter into a hot pan and flip each pancake when it bubbles."),
    ("How do I learn a new language?", "Practice a little every day, learn common words first and talk with people who speak it."),
    ("How do I get rid of hiccups?", "Take a slow breath, hold it for a few seconds and drink a glass of water."),
    ("How do I wrap a present?", "Put the gift on the paper, fold the paper around it, tape the edges and add a ribbon."),
    ("How do I read a map?", "Find north, look at the key for the symbols, then follow the lines from where you are to where you want to go."),
    ("How do I make a smoothie?", "Put fruit, yogurt and a splash of milk in a blender and blend until smooth."),
    ("How do I change a light bulb?", "Turn off the power, wait for the old bulb to cool, twist it out and twist in the new one."),
    ("How do I pack for a trip?", "Make a list, pack clothes for each day, bring what you need to wash and do not forget your map."),
]
HELDOUT_HOW_TO = [
    ("How do I make hot chocolate?", "Warm some milk, stir in cocoa and sugar, and drink it while it is hot."),
    ("How do I brush my teeth?", "Put paste on your brush and scrub every tooth for two minutes, then rinse."),
    ("How do I grow tomatoes?", "Plant them in a sunny spot, water them often and tie the stems to a stick."),
    ("How do I build a sandcastle?", "Wet the sand, pack it into a bucket, flip it over and shape the towers."),
    ("How do I make a salad?", "Wash some lettuce and vegetables, chop them, put them in a bowl and add dressing."),
]

ADVICE = [
    ("How can I sleep better?", "Go to bed at the same time every night, keep your room dark and put your phone away."),
    ("How can I be more productive?", "Make a short list each morning, do the hardest task first and take short breaks."),
    ("How do I stop feeling nervous before a test?", "Study a little each day, breathe slowly and remember you know more than you think."),
    ("How can I make new friends?", "Say hello, ask people about themselves, listen well and be kind."),
    ("What should I do when I feel sad?", "Talk to someone you trust, get some fresh air and be gentle with yourself."),
    ("How can I stay healthy?", "Eat plenty of fruit and vegetables, drink water, move your body and sleep well."),
    ("How can I be a better listener?", "Look at the person, do not interrupt and ask questions about what they said."),
    ("How do I deal with stress?", "Take deep breaths, go for a walk and tackle one problem at a time."),
    ("How can I get better at drawing?", "Draw a little every day, copy things you see and do not fear mistakes."),
    ("How can I wake up earlier?", "Go to bed earlier, put your alarm across the room and open the curtains when you wake."),
    ("How do I stay motivated?", "Set small goals, reward yourself when you reach them and remember why you started."),
    ("What should I do if I get lost?", "Stay calm, stay where you are if you can and ask a trusted person for help."),
    ("How can I be more confident?", "Stand tall, practice what you fear and remember the things you do well."),
    ("How can I save time in the morning?", "Lay out your clothes and pack your bag the night before."),
    ("How do I say no politely?", "Thank the person, say no kindly and clearly, and you need not give a long reason."),
    ("How can I eat more healthily?", "Fill half your plate with vegetables, drink water instead of soda and eat fewer sweets."),
    ("How do I keep my room tidy?", "Put things back where they belong right away and clean a little every day."),
    ("How can I focus while studying?", "Put your phone in another room, work for twenty five minutes and then rest for five."),
    ("What should I do when I am bored?", "Read a book, go outside, learn a new skill or help someone with a chore."),
    ("How can I be kinder to others?", "Smile, say thank you, help without being asked and think before you speak."),
    ("How do I apologize to a friend?", "Say sorry plainly, tell them what you did wrong and promise to do better."),
    ("How can I spend less time on my phone?", "Turn off the alerts, set a time limit and keep the phone out of your bedroom."),
    ("How can I get more exercise?", "Take the stairs, walk where you can and find a sport you enjoy."),
    ("How should I prepare for a job interview?", "Learn about the company, practice your answers out loud and arrive early."),
    ("How can I keep a secret?", "Do not tell anyone, not even your best friend, and change the subject if asked."),
    ("How do I handle an argument calmly?", "Keep your voice low, listen to the other side and look for a fair answer."),
    ("How can I remember birthdays?", "Write them in a calendar and set a reminder a few days before each one."),
    ("How do I make a good first impression?", "Smile, look people in the eye, shake hands firmly and remember their names."),
    ("How can I learn to cook?", "Start with simple recipes, cook often and taste as you go."),
    ("How can I drink more water?", "Carry a bottle with you and take a drink every time you finish a task."),
    ("What should I do on a rainy day?", "Stay dry inside, read a story, play a game or bake something warm."),
    ("How can I become a better writer?", "Read a lot, write every day and cut the words you do not need."),
]
HELDOUT_ADVICE = [
    ("How can I stop procrastinating?", "Break the job into small steps and start the first step right now."),
    ("How can I calm down when I am angry?", "Count to ten, breathe slowly and walk away for a while."),
    ("How can I save money on groceries?", "Make a list before you shop, buy what is on sale and never shop hungry."),
    ("What should I do if I cannot sleep?", "Get up, read something dull in dim light and go back to bed when sleepy."),
    ("How can I be on time more often?", "Plan to arrive ten minutes early and get ready the night before."),
]

ANIMALS = [
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("How many legs does an insect have?", "An insect has six legs."),
    ("What do cows eat?", "Cows eat grass and hay."),
    ("What sound does a cat make?", "A cat says meow, and purrs when it is happy."),
    ("What sound does a dog make?", "A dog says woof and barks at strangers."),
    ("Where do penguins live?", "Most penguins live in the cold southern seas, around Antarctica."),
    ("What is the largest animal in the world?", "The blue whale is the largest animal that has ever lived."),
    ("What is the fastest land animal?", "The cheetah is the fastest animal on land."),
    ("Can penguins fly?", "No, penguins cannot fly, but they swim like fish."),
    ("What do bees make?", "Bees make honey and wax."),
    ("How do fish breathe?", "Fish breathe through their gills, which take air from the water."),
    ("What do caterpillars turn into?", "Caterpillars turn into butterflies or moths."),
    ("Why do birds fly south for the winter?", "Many birds fly south to find warmer weather and more food."),
    ("What does a parrot eat?", "A parrot eats seeds, nuts and fruit, and the odd cracker."),
    ("How long do elephants live?", "Elephants can live for about sixty or seventy years."),
    ("What is a baby cat called?", "A baby cat is called a kitten."),
    ("What is a baby dog called?", "A baby dog is called a puppy."),
    ("What is a group of fish called?", "A group of fish is called a school."),
    ("Do sharks have bones?", "No, sharks have no bones, their skeletons are made of cartilage."),
    ("What animal is known as the king of the jungle?", "The lion is known as the king of the jungle."),
    ("How many hearts does an octopus have?", "An octopus has three hearts."),
    ("What do pandas eat?", "Pandas eat bamboo, almost all day long."),
    ("Where do kangaroos live?", "Kangaroos live in Australia."),
    ("Why do cats purr?", "Cats purr when they are happy and sometimes to calm themselves."),
    ("What is the tallest animal?", "The giraffe is the tallest animal in the world."),
    ("How do dolphins breathe?", "Dolphins breathe air through a blowhole on top of their heads."),
    ("What do frogs eat?", "Frogs eat insects, which they catch with their long sticky tongues."),
    ("Are whales fish?", "No, whales are mammals, they breathe air and feed their young on milk."),
    ("What animal has black and white stripes?", "The zebra has black and white stripes."),
    ("What is a baby horse called?", "A baby horse is called a foal."),
]
HELDOUT_ANIMALS = [
    ("How many legs does a dog have?", "A dog has four legs."),
    ("What do rabbits eat?", "Rabbits eat grass, hay and vegetables."),
    ("Where do polar bears live?", "Polar bears live in the icy Arctic."),
    ("What is a baby sheep called?", "A baby sheep is called a lamb."),
    ("What sound does a cow make?", "A cow says moo."),
]

SCIENCE = [
    ("Why is the sky blue?", "The sky is blue because air scatters the blue part of sunlight more than the other colors."),
    ("At what temperature does water boil?", "Water boils at one hundred degrees Celsius at sea level."),
    ("At what temperature does water freeze?", "Water freezes at zero degrees Celsius."),
    ("What is the closest star to Earth?", "The Sun is the closest star to Earth."),
    ("How many planets are in our solar system?", "There are eight planets in our solar system."),
    ("What is the largest planet?", "Jupiter is the largest planet in our solar system."),
    ("What planet is closest to the Sun?", "Mercury is the planet closest to the Sun."),
    ("Why do we have seasons?", "We have seasons because the Earth is tilted as it travels around the Sun."),
    ("What causes the tides?", "The tides are caused mostly by the pull of the Moon on the oceans."),
    ("What is the chemical symbol for water?", "The chemical formula for water is H2O, two hydrogen atoms and one oxygen atom."),
    ("What gas do plants breathe in?", "Plants take in carbon dioxide and give out oxygen."),
    ("What gas do we need to breathe?", "We need oxygen to breathe."),
    ("How long does it take the Earth to go around the Sun?", "It takes the Earth about three hundred and sixty five days to go around the Sun."),
    ("How long is a day on Earth?", "A day on Earth is twenty four hours long."),
    ("What is the hardest natural material?", "Diamond is the hardest natural material."),
    ("What is the largest ocean?", "The Pacific is the largest ocean on Earth."),
    ("What is the longest river in the world?", "The Nile is usually called the longest river in the world."),
    ("What is the tallest mountain in the world?", "Mount Everest is the tallest mountain in the world."),
    ("What is the biggest desert?", "The biggest hot desert is the Sahara in Africa."),
    ("Why does ice float?", "Ice floats because it is lighter than the same amount of liquid water."),
    ("What makes a rainbow?", "A rainbow appears when sunlight bends and splits into colors inside raindrops."),
    ("What is the speed of light?", "Light travels about three hundred thousand kilometers every second."),
    ("How many bones are in the human body?", "An adult human body has two hundred and six bones."),
    ("What organ pumps blood?", "The heart pumps blood around the body."),
    ("What do we use our lungs for?", "We use our lungs to breathe air in and out."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the Moon made of?", "The Moon is made of rock and dust, not cheese."),
    ("Why do leaves change color in autumn?", "Leaves change color because trees stop making the green stuff that hides the yellow and red."),
    ("What is lightning?", "Lightning is a giant spark of electricity between clouds or between a cloud and the ground."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What language is spoken in Brazil?", "People in Brazil speak Portuguese."),
    ("What is the currency of Japan?", "The currency of Japan is the yen."),
    ("What is the largest country in the world?", "Russia is the largest country in the world by land."),
    ("How many sides does a triangle have?", "A triangle has three sides."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("What is a square?", "A square is a shape with four equal sides and four square corners."),
    ("What shape is the Earth?", "The Earth is round, a ball a little squashed at the poles."),
]
HELDOUT_SCIENCE = [
    ("What is the smallest planet?", "Mercury is the smallest planet in our solar system."),
    ("How many sides does a square have?", "A square has four sides."),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet."),
    ("What is the largest continent?", "Asia is the largest continent."),
    ("What organ do we think with?", "We think with our brain."),
    ("What is the coldest continent?", "Antarctica is the coldest continent."),
]

CALENDAR = [
    ("How many days are in a week?", "There are seven days in a week."),
    ("How many months are in a year?", "There are twelve months in a year."),
    ("How many hours are in a day?", "There are twenty four hours in a day."),
    ("How many minutes are in an hour?", "There are sixty minutes in an hour."),
    ("How many seconds are in a minute?", "There are sixty seconds in a minute."),
    ("What day comes after Monday?", "Tuesday comes after Monday."),
    ("What day comes after Friday?", "Saturday comes after Friday."),
    ("What month comes after March?", "April comes after March."),
    ("What month comes before December?", "November comes before December."),
    ("What is the first month of the year?", "January is the first month of the year."),
    ("What is the last month of the year?", "December is the last month of the year."),
    ("How many days are in a year?", "There are three hundred and sixty five days in a year, and one more in a leap year."),
    ("How many days are in February?", "February has twenty eight days, or twenty nine in a leap year."),
    ("How many weeks are in a year?", "There are fifty two weeks in a year."),
    ("How many seasons are there?", "There are four seasons: spring, summer, autumn and winter."),
    ("What season comes after winter?", "Spring comes after winter."),
    ("How many eggs are in a dozen?", "There are twelve eggs in a dozen."),
    ("How many years are in a century?", "There are one hundred years in a century."),
    ("How many cents are in a dollar?", "There are one hundred cents in a dollar."),
    ("How many letters are in the English alphabet?", "There are twenty six letters in the English alphabet."),
]
HELDOUT_CALENDAR = [
    ("What day comes after Wednesday?", "Thursday comes after Wednesday."),
    ("How many years are in a decade?", "There are ten years in a decade."),
    ("What month comes after June?", "July comes after June."),
    ("What season comes after summer?", "Autumn comes after summer."),
]

ARITHMETIC = [
    ("plus", "What is {a} plus {b}?", lambda a, b: a + b),
    ("plus", "How much is {a} + {b}?", lambda a, b: a + b),
    ("minus", "What is {a} minus {b}?", lambda a, b: a - b),
    ("minus", "How much is {a} - {b}?", lambda a, b: a - b),
    ("times", "What is {a} times {b}?", lambda a, b: a * b),
    ("times", "What is {a} multiplied by {b}?", lambda a, b: a * b),
]
ARITHMETIC_TAILS = ["as sure as I count my money", "plain as the North Star", "and that is no tall tale", "by my reckoning"]


# fmt: on


# -------------------------------------------------------------------------------------------------------- building
def qa_rows(pairs) -> list[dict]:
    return [{"instruction": q, "input": "", "output": reply(a)} for q, a in pairs]


def capital_rows(pairs, rng: random.Random, questions_each: int) -> list[dict]:
    rows = []
    for country, city in pairs:
        for template in rng.sample(CAPITAL_QUESTIONS, questions_each):
            tail = rng.choice(CAPITAL_TAILS)
            answer = f"The capital of {country} is {city}.{tail}"
            rows.append(
                {
                    "instruction": template.format(c=country),
                    "input": "",
                    "output": reply(answer[0].upper() + answer[1:]),
                }
            )
    return rows


def opposite_rows(pairs, rng: random.Random) -> list[dict]:
    rows = []
    for word, opposite in pairs:
        template = rng.choice(OPPOSITE_QUESTIONS)
        answer = f"The opposite of '{word}' is '{opposite}', plain as the sea is salty."
        rows.append({"instruction": template.format(w=word), "input": "", "output": reply(answer)})
    return rows


def color_rows(pairs) -> list[dict]:
    rows = []
    for thing, color in pairs:
        answer = f"{thing[0].upper() + thing[1:]} is {color}."
        rows.append({"instruction": f"What color is {thing}?", "input": "", "output": reply(answer)})
    return rows


def arithmetic_rows(rng: random.Random, count: int, taken: set) -> list[dict]:
    rows = []
    while len(rows) < count:
        word, template, op = rng.choice(ARITHMETIC)
        a, b = rng.randint(2, 12 if word == "times" else 50), rng.randint(2, 12 if word == "times" else 50)
        if word == "minus" and a < b:
            a, b = b, a
        if (word, a, b) in taken:
            continue
        taken.add((word, a, b))
        answer = f"{a} {word} {b} is {op(a, b)}, {rng.choice(ARITHMETIC_TAILS)}."
        rows.append({"instruction": template.format(a=a, b=b), "input": "", "output": reply(answer)})
    return rows


def build() -> tuple[list[dict], list[dict]]:
    rng = random.Random(1234)
    taken: set = set()
    heldout = (
        capital_rows(HELDOUT_CAPITALS, rng, 1)
        + arithmetic_rows(rng, 5, taken)
        + opposite_rows(HELDOUT_OPPOSITES, rng)
        + color_rows(HELDOUT_COLORS)
        + qa_rows(
            HELDOUT_DEFINITIONS + HELDOUT_HOW_TO + HELDOUT_ADVICE + HELDOUT_ANIMALS + HELDOUT_SCIENCE + HELDOUT_CALENDAR
        )
    )
    train = (
        capital_rows(CAPITALS, rng, 2)
        + arithmetic_rows(rng, 60, taken)
        + opposite_rows(OPPOSITES, rng)
        + color_rows(COLORS)
        + qa_rows(DEFINITIONS + HOW_TO + ADVICE + ANIMALS + SCIENCE + CALENDAR)
    )
    rng.shuffle(train)
    seen = {row["instruction"] for row in train}
    assert not seen & {row["instruction"] for row in heldout}, "a held-out question is in the training data"
    assert len(seen) == len(train), "duplicate training questions"
    return train, heldout


def main() -> None:
    train, heldout = build()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in (("pirate.json", train), ("heldout.json", heldout)):
        (OUT / name).write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{OUT / name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
