"""Every solver method: a Butcher tableau, its order and (where it has one) its continuous extension; and
``scipy_solver``, which hands the whole problem to SciPy (``scipy_solve.py``).

Coefficients are the published ones: Dormand & Prince (1980) with Shampine's (1986) dense
output for ``dopri5``; Bogacki & Shampine (1989) for ``bosh3``; Tsitouras (2011) for
``tsit5``; Hairer's DOP853 (Hairer, Nørsett & Wanner, *Solving ODEs I*) for ``dopri8``.
"""

from __future__ import annotations

from .adams import AdamsBashforth, AdamsBashforthMoulton
from .implicit_methods import IMPLICIT_TABLEAUS
from .options import Method
from .scipy_solve import SCIPY_SOLVER
from .stiff_methods import STIFF_TABLEAUS
from .tableau import ButcherTableau


def _poly_mul(p: list[float], q: list[float]) -> list[float]:
    out = [0.0] * (len(p) + len(q) - 1)
    for i, x in enumerate(p):
        for j, y in enumerate(q):
            out[i + j] += x * y
    return out


def _poly_add(p: list[float], q: list[float]) -> list[float]:
    n = max(len(p), len(q))
    return [(p[i] if i < len(p) else 0.0) + (q[i] if i < len(q) else 0.0) for i in range(n)]


def _nested_dense(columns: list[list[float]]) -> tuple[tuple[float, ...], ...]:
    """Expand ``theta (F0 + (1-theta)(F1 + theta (F2 + (1-theta)(F3 + ...))))`` per stage.

    ``columns[j]`` holds stage ``j``'s coefficients in ``F0, F1, ...``; returns the
    coefficients of ``theta**1 .. theta**q`` per stage.
    """
    theta, one_minus = [0.0, 1.0], [1.0, -1.0]
    rows = []
    for column in columns:
        poly = [0.0]
        for m in range(len(column) - 1, -1, -1):
            poly = _poly_mul(_poly_add(poly, [column[m]]), theta if m % 2 == 0 else one_minus)
        rows.append(tuple(poly[1:]))
    return tuple(rows)


def _hermite(b: tuple[float, ...], fsal: bool) -> dict:
    """Cubic Hermite dense output from ``y0, f0, y1, f1`` written as stage weights.

    ``f1`` is the FSAL stage when there is one, else one extra stage evaluated at ``y1``.
    """
    s = len(b)
    end = s - 1 if fsal else s
    columns = []
    for j in range(end + 1):
        b_j = b[j] if j < s else 0.0
        columns.append([b_j, float(j == 0) - b_j, 2 * b_j - float(j == 0) - float(j == end)])
    extra = {} if fsal else {"dense_a": (b,), "dense_c": (1.0,)}
    return {"dense": _nested_dense(columns), **extra}


EULER = ButcherTableau(name="euler", a=((),), b=(1.0,), c=(0.0,), order=1)

MIDPOINT = ButcherTableau(name="midpoint", a=((), (1 / 2,)), b=(0.0, 1.0), c=(0.0, 1 / 2), order=2)

HEUN = ButcherTableau(name="heun", a=((), (1.0,)), b=(1 / 2, 1 / 2), c=(0.0, 1.0), order=2)

# Heun's third-order method (Heun 1900; Hairer, Nørsett & Wanner, *Solving ODEs I*, Table II.1.1).
HEUN3 = ButcherTableau(
    name="heun3", a=((), (1 / 3,), (0.0, 2 / 3)), b=(1 / 4, 0.0, 3 / 4), c=(0.0, 1 / 3, 2 / 3), order=3
)

RK4 = ButcherTableau(
    name="rk4",
    a=((), (1 / 2,), (0.0, 1 / 2), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    c=(0.0, 1 / 2, 1 / 2, 1.0),
    order=4,
)

ADAPTIVE_HEUN = ButcherTableau(
    name="adaptive_heun",
    a=((), (1.0,)),
    b=(1 / 2, 1 / 2),
    c=(0.0, 1.0),
    order=2,
    b_err=(-1 / 2, 1 / 2),  # Heun minus Euler
    error_order=1,
    **_hermite((1 / 2, 1 / 2), fsal=False),
)

FEHLBERG2 = ButcherTableau(
    name="fehlberg2",
    a=((), (1 / 2,), (1 / 256, 255 / 256)),
    b=(1 / 512, 255 / 256, 1 / 512),
    c=(0.0, 1 / 2, 1.0),
    order=2,
    b_err=(-1 / 512, 0.0, 1 / 512),
    error_order=1,
    **_hermite((1 / 512, 255 / 256, 1 / 512), fsal=False),
)

BOSH3 = ButcherTableau(
    name="bosh3",
    a=((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    c=(0.0, 1 / 2, 3 / 4, 1.0),
    order=3,
    b_err=(-5 / 72, 1 / 12, 1 / 9, -1 / 8),
    error_order=2,
    dense=(
        (1.0, -4 / 3, 5 / 9),
        (0.0, 1.0, -2 / 3),
        (0.0, 4 / 3, -8 / 9),
        (0.0, -1.0, 1.0),
    ),
)

_DOPRI5_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)

DOPRI5 = ButcherTableau(
    name="dopri5",
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DOPRI5_B[:6],
    ),
    b=_DOPRI5_B,
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    order=5,
    b_err=(71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40),
    error_order=4,
    dense=(
        (1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432),
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799),
        (0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072),
        (0.0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632),
        (0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844),
        (0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423),
    ),
)


def _first_column(c: tuple[float, ...], rows: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
    """Complete each row with its first coefficient, ``a[i][0] = c[i] - sum(a[i][1:])``."""
    return ((),) + tuple((c_i - sum(row),) + row for c_i, row in zip(c[1:], rows))


_TSIT5_C = (0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0)
_TSIT5_B = (
    0.09646076681806523,
    0.01,
    0.4798896504144996,
    1.379008574103742,
    -3.290069515436081,
    2.324710524099774,
    0.0,
)

TSIT5 = ButcherTableau(
    name="tsit5",
    a=_first_column(
        _TSIT5_C,
        (
            (),
            (0.335480655492357,),
            (-6.359448489975075, 4.362295432869581),
            (-11.74888356406283, 7.495539342889836, -0.09249506636175525),
            (-12.92096931784711, 8.159367898576159, -0.071584973281401, -0.02826905039406838),
            _TSIT5_B[1:6],
        ),
    ),
    b=_TSIT5_B,
    c=_TSIT5_C,
    order=5,
    b_err=(
        -0.001780011052225777,
        -0.0008164344596567469,
        0.007880878010261995,
        -0.1447110071732629,
        0.5823571654525552,
        -0.45808210592918697,
        1 / 66,
    ),
    error_order=4,
    dense=(
        (1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216),
        (0.0, 0.13169999999999998, -0.2234, 0.1017),
        (0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253),
        (0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902),
        (0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928),
        (0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661),
        (0.0, 1.5, -4.0, 2.5),
    ),
)

_DOP853_B = (
    5.42937341165687622380535766363e-2,
    0.0,
    0.0,
    0.0,
    0.0,
    4.45031289275240888144113950566,
    1.89151789931450038304281599044,
    -5.8012039600105847814672114227,
    3.1116436695781989440891606237e-1,
    -1.52160949662516078556178806805e-1,
    2.01365400804030348374776537501e-1,
    4.47106157277725905176885569043e-2,
)

# DOP853's seventh-order continuous extension: three extra stages and four rows of D.
_DOP853_EXTRA_A = (
    (
        5.61675022830479523392909219681e-2,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        2.53500210216624811088794765333e-1,
        -2.46239037470802489917441475441e-1,
        -1.24191423263816360469010140626e-1,
        1.5329179827876569731206322685e-1,
        8.20105229563468988491666602057e-3,
        7.56789766054569976138603589584e-3,
        -8.298e-3,
    ),
    (
        3.18346481635021405060768473261e-2,
        0.0,
        0.0,
        0.0,
        0.0,
        2.83009096723667755288322961402e-2,
        5.35419883074385676223797384372e-2,
        -5.49237485713909884646569340306e-2,
        0.0,
        0.0,
        -1.08347328697249322858509316994e-4,
        3.82571090835658412954920192323e-4,
        -3.40465008687404560802977114492e-4,
        1.41312443674632500278074618366e-1,
    ),
    (
        -4.28896301583791923408573538692e-1,
        0.0,
        0.0,
        0.0,
        0.0,
        -4.69762141536116384314449447206,
        7.68342119606259904184240953878,
        4.06898981839711007970213554331,
        3.56727187455281109270669543021e-1,
        0.0,
        0.0,
        0.0,
        -1.39902416515901462129418009734e-3,
        2.9475147891527723389556272149,
        -9.15095847217987001081870187138,
    ),
)
_DOP853_EXTRA_C = (0.1, 0.2, 0.777777777777777777777777777778)
_DOP853_D = (
    (
        -0.84289382761090128651353491142e1,
        0.0,
        0.0,
        0.0,
        0.0,
        0.56671495351937776962531783590,
        -0.30689499459498916912797304727e1,
        0.23846676565120698287728149680e1,
        0.21170345824450282767155149946e1,
        -0.87139158377797299206789907490,
        0.22404374302607882758541771650e1,
        0.63157877876946881815570249290,
        -0.88990336451333310820698117400e-1,
        0.18148505520854727256656404962e2,
        -0.91946323924783554000451984436e1,
        -0.44360363875948939664310572000e1,
    ),
    (
        0.10427508642579134603413151009e2,
        0.0,
        0.0,
        0.0,
        0.0,
        0.24228349177525818288430175319e3,
        0.16520045171727028198505394887e3,
        -0.37454675472269020279518312152e3,
        -0.22113666853125306036270938578e2,
        0.77334326684722638389603898808e1,
        -0.30674084731089398182061213626e2,
        -0.93321305264302278729567221706e1,
        0.15697238121770843886131091075e2,
        -0.31139403219565177677282850411e2,
        -0.93529243588444783865713862664e1,
        0.35816841486394083752465898540e2,
    ),
    (
        0.19985053242002433820987653617e2,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.38703730874935176555105901742e3,
        -0.18917813819516756882830838328e3,
        0.52780815920542364900561016686e3,
        -0.11573902539959630126141871134e2,
        0.68812326946963000169666922661e1,
        -0.10006050966910838403183860980e1,
        0.77771377980534432092869265740,
        -0.27782057523535084065932004339e1,
        -0.60196695231264120758267380846e2,
        0.84320405506677161018159903784e2,
        0.11992291136182789328035130030e2,
    ),
    (
        -0.25693933462703749003312586129e2,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.15418974869023643374053993627e3,
        -0.23152937917604549567536039109e3,
        0.35763911791061412378285349910e3,
        0.93405324183624310003907691704e2,
        -0.37458323136451633156875139351e2,
        0.10409964950896230045147246184e3,
        0.29840293426660503123344363579e2,
        -0.43533456590011143754432175058e2,
        0.96324553959188282948394950600e2,
        -0.39177261675615439165231486172e2,
        -0.14972683625798562581422125276e3,
    ),
)


def _dop853_dense() -> dict:
    """Hairer's DOP853 interpolant ``theta (F0 + (1-theta)(F1 + theta (F2 + ...)))`` as stage weights."""
    b = _DOP853_B + (0.0,) * 4  # 12 stages, the FSAL stage (index 12) and 3 extra stages
    columns = []
    for j, b_j in enumerate(b):
        f0, f1 = float(j == 0), float(j == 12)
        columns.append([b_j, f0 - b_j, 2 * b_j - f0 - f1] + [row[j] for row in _DOP853_D])
    return {"dense": _nested_dense(columns), "dense_a": _DOP853_EXTRA_A, "dense_c": _DOP853_EXTRA_C}


DOPRI8 = ButcherTableau(
    name="dopri8",
    a=(
        (),
        (5.26001519587677318785587544488e-2,),
        (1.97250569845378994544595329183e-2, 5.91751709536136983633785987549e-2),
        (2.95875854768068491816892993775e-2, 0.0, 8.87627564304205475450678981324e-2),
        (
            2.41365134159266685502369798665e-1,
            0.0,
            -8.84549479328286085344864962717e-1,
            9.24834003261792003115737966543e-1,
        ),
        (
            3.7037037037037037037037037037e-2,
            0.0,
            0.0,
            1.70828608729473871279604482173e-1,
            1.25467687566822425016691814123e-1,
        ),
        (3.7109375e-2, 0.0, 0.0, 1.70252211019544039314978060272e-1, 6.02165389804559606850219397283e-2, -1.7578125e-2),
        (
            3.70920001185047927108779319836e-2,
            0.0,
            0.0,
            1.70383925712239993810214054705e-1,
            1.07262030446373284651809199168e-1,
            -1.53194377486244017527936158236e-2,
            8.27378916381402288758473766002e-3,
        ),
        (
            6.24110958716075717114429577812e-1,
            0.0,
            0.0,
            -3.36089262944694129406857109825,
            -8.68219346841726006818189891453e-1,
            2.75920996994467083049415600797e1,
            2.01540675504778934086186788979e1,
            -4.34898841810699588477366255144e1,
        ),
        (
            4.77662536438264365890433908527e-1,
            0.0,
            0.0,
            -2.48811461997166764192642586468,
            -5.90290826836842996371446475743e-1,
            2.12300514481811942347288949897e1,
            1.52792336328824235832596922938e1,
            -3.32882109689848629194453265587e1,
            -2.03312017085086261358222928593e-2,
        ),
        (
            -9.3714243008598732571704021658e-1,
            0.0,
            0.0,
            5.18637242884406370830023853209,
            1.09143734899672957818500254654,
            -8.14978701074692612513997267357,
            -1.85200656599969598641566180701e1,
            2.27394870993505042818970056734e1,
            2.49360555267965238987089396762,
            -3.0467644718982195003823669022,
        ),
        (
            2.27331014751653820792359768449,
            0.0,
            0.0,
            -1.05344954667372501984066689879e1,
            -2.00087205822486249909675718444,
            -1.79589318631187989172765950534e1,
            2.79488845294199600508499808837e1,
            -2.85899827713502369474065508674,
            -8.87285693353062954433549289258,
            1.23605671757943030647266201528e1,
            6.43392746015763530355970484046e-1,
        ),
        _DOP853_B,
    ),
    b=_DOP853_B + (0.0,),
    c=(
        0.0,
        0.526001519587677318785587544488e-01,
        0.789002279381515978178381316732e-01,
        0.118350341907227396726757197510,
        0.281649658092772603273242802490,
        1 / 3,
        0.25,
        0.307692307692307692307692307692,
        0.651282051282051282051282051282,
        0.6,
        0.857142857142857142857142857142,
        1.0,
        1.0,
    ),
    order=8,
    # The fifth-order error estimate of DOP853 (its third-order companion is not used).
    b_err=(
        0.1312004499419488073250102996e-1,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.1225156446376204440720569753e1,
        -0.4957589496572501915214079952,
        0.1664377182454986536961530415e1,
        -0.3503288487499736816886487290,
        0.3341791187130174790297318841,
        0.8192320648511571246570742613e-1,
        -0.2235530786388629525884427845e-1,
        0.0,
    ),
    error_order=5,
    **_dop853_dense(),
)

FIXED_STEP = {t.name: t for t in (EULER, MIDPOINT, HEUN, HEUN3, RK4)}
ADAPTIVE = {t.name: t for t in (ADAPTIVE_HEUN, FEHLBERG2, BOSH3, DOPRI5, TSIT5, DOPRI8)}
IMPLICIT = {t.name: t for t in IMPLICIT_TABLEAUS}  # fixed step, solved by Newton's method (solvers.implicit)
STIFF = {t.name: t for t in STIFF_TABLEAUS}  # adaptive implicit (ESDIRK), solved by Newton's method
# Multistep: Adams methods on the fixed grid, started by RK4 (or by DOP853's eighth order for max_order > 5).
ADAMS = {m.name: m for m in (AdamsBashforth(starters=(RK4, DOPRI8)), AdamsBashforthMoulton(starters=(RK4, DOPRI8)))}
SCIPY = {SCIPY_SOLVER.name: SCIPY_SOLVER}  # the whole problem solved by scipy.integrate.solve_ivp
METHODS: dict[str, Method] = {**FIXED_STEP, **ADAPTIVE, **IMPLICIT, **STIFF, **ADAMS, **SCIPY}

# Other names accepted for a method (torchdiffeq's, where they differ): alias -> the method's name.
# Accepted wherever a method is named (odeint's ``method``, ``solver.method``); not listed in METHODS.
ALIASES = {"heun2": "heun"}


def get_method(name: str) -> Method:
    """The method called ``name`` (or one of its ``ALIASES``); ``ValueError`` listing the valid names otherwise."""
    try:
        return METHODS[ALIASES.get(name, name)]
    except (KeyError, TypeError):
        aliases = ", ".join(f"{alias} (= {name})" for alias, name in ALIASES.items())
        raise ValueError(
            f"unknown method {name!r}; valid methods: fixed step {', '.join(FIXED_STEP)}; "
            f"adaptive {', '.join(ADAPTIVE)}; implicit {', '.join(IMPLICIT)}; adaptive implicit (stiff) "
            f"{', '.join(STIFF)}; multistep {', '.join(ADAMS)}; "
            f"SciPy {', '.join(SCIPY)}; aliases {aliases}"
        ) from None
